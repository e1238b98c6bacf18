"""Per-test databases cloned from a migrated template."""

import asyncpg


async def clone_database(admin: asyncpg.Connection, template: str, name: str) -> None:
    """CREATE DATABASE `name` from `template`, with the template's database settings.

    A clone does not inherit its template's ALTER DATABASE settings, among them the search
    path that finds each service's tables in its own schema."""
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    settings = await admin.fetchval(
        "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d"
        " ON d.oid = s.setdatabase WHERE d.datname = $1 AND s.setrole = 0",
        template,
    )
    for setting in settings or []:
        key, value = setting.split("=", 1)
        await admin.execute(f'ALTER DATABASE "{name}" SET {key} = {value}')


async def let_roles_start(dsn: str, *roles: str) -> None:
    """Let services that log in as `roles` start on the migrated database `dsn`.

    `migrate`, run at every start, creates its ledger if missing, which needs CREATE in
    `public` even when the ledger exists (the owner has applied every migration here)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"GRANT CREATE ON SCHEMA public TO {', '.join(roles)}")
    finally:
        await conn.close()
