"""What a tenant may use now: grants (fields, rows, budget, expiry) and the suspension of
tenants and datasets. Read by data (views), dp, workflow and egress."""
