"""PostgreSQL: the connection pool and the schema's numbered migrations.

Each area writes its own tables; this package only opens connections and
migrates. Never edit a migration that has shipped: add the next number.
"""
