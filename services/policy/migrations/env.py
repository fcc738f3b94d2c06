from aisuper.platform.migrations import run_env

run_env()
