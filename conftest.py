pytest_plugins = ["aisuper.platform.testing", "identity_harness"]
