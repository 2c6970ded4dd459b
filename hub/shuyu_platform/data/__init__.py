"""The data zones' contents: dataset policies, masking, masked views (built per tenant),
synthetic twins, the demo data generator and identifier formats."""
