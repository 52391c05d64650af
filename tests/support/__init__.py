"""What the tests share: tiny networks, trainers and data writers, the method cases, and the repository's paths.

Modules are importable at module level (``tests.support.<module>``), so that ``ddp_spawn`` workers and CLI
subprocesses started with the repository root on ``PYTHONPATH`` can import the classes they name.
"""
