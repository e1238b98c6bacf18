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
