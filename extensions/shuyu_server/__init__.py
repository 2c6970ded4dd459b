"""Shuyu's side of a tenant's single-user server, running inside the sandbox.

Nothing here imports the hub side: this package is what the sandbox carries.
``relay`` moves bytes between the sandbox's private network namespace and the few
Unix sockets the spawner hands it; ``sandbox_init`` starts those relays and then the
single-user server.
"""
