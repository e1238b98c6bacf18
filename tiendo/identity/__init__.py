"""Who may call tiendo: named identities bound to a role and a unit scope (docs/access.md).

`tokens` makes and hashes secrets, `model` holds the pure rules (roles, scopes), `repository`
the SQL of `auth.identities`, `store` the cached view every service checks requests against,
`guard` the FastAPI dependencies that name each route's owner, `api` the admin routes.
"""
