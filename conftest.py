pytest_plugins = [
    "aisuper.platform.testing",
    "identity_harness",
    "catalog_harness",
    "policy_harness",
]
