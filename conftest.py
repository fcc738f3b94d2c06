pytest_plugins = ["aisuper.platform.testing"]
