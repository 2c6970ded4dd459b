"""Where a merchant's code runs: the spawn policy, the bubblewrap sandbox spawner and the
Docker / Kubernetes spawner."""
