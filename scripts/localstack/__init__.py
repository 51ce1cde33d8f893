"""Real local infrastructure for the demo and the tests: a private PostgreSQL
cluster, a SoftHSM2 token, an anvil node, a test token and Kassa's processes.

Nothing here is a mock; every helper starts the real program in a directory
it owns and stops it again.
"""
