"""The pure rules of access: which units a scope covers, which scopes an identity may have,
what a non-admin sees of an address, and which secrets a service may start with."""

import string

from hypothesis import given
from hypothesis import strategies as st

from services.notifier.privacy import masked, shown_address
from tiendo.identity.model import Identity, Role, covers, scope_problems
from tiendo.settings import MIN_SECRET_LENGTH, secret_problems

codes = st.text(alphabet="0123456789", min_size=1, max_size=5)
chains = st.lists(codes, max_size=5)


@given(roots=st.frozensets(codes, max_size=4), code=codes, ancestors=chains)
def test_a_scope_covers_exactly_the_subtrees_of_its_roots(
    roots: frozenset[str], code: str, ancestors: list[str]
) -> None:
    inside = not roots or code in roots or bool(roots & set(ancestors))
    assert covers(roots, code, ancestors) is inside
    assert Identity("x", Role.reader, roots).sees(code, ancestors) is inside


@st.composite
def paths(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A unit and its ancestors, root first: distinct codes, as in a tree."""
    chain = draw(st.lists(codes, min_size=1, max_size=6, unique=True))
    return chain[-1], chain[:-1]


@given(path=paths(), other=codes)
def test_a_ward_chief_sees_the_ward_and_a_district_its_wards_but_not_their_parent(
    path: tuple[str, list[str]], other: str
) -> None:
    code, ancestors = path
    assert covers(frozenset({code}), code, ancestors)
    for i, ancestor in enumerate(ancestors):
        # a district sees its ward; a ward never sees the units above it
        assert covers(frozenset({ancestor}), code, ancestors)
        assert not covers(frozenset({code}), ancestor, ancestors[:i])
    if other != code and other not in ancestors:
        assert not covers(frozenset({other}), code, ancestors)


@given(role=st.sampled_from(list(Role)), units=st.lists(codes, max_size=3), every=st.booleans())
def test_only_readers_have_a_subtree_and_it_is_never_implied(
    role: Role, units: list[str], every: bool
) -> None:
    problems = scope_problems(role, units, every)
    if role is Role.ingest:
        assert problems  # issued by `tiendo ingest token-create`, with indicators
    elif role in (Role.admin, Role.auditor):
        assert bool(problems) is bool(units)
    else:
        assert bool(problems) is (bool(units) == every)


emails = st.tuples(
    st.text(alphabet=string.ascii_lowercase + ".", min_size=2, max_size=20),
    st.text(alphabet=string.ascii_lowercase + ".", min_size=1, max_size=20),
)


@given(parts=emails)
def test_a_non_admin_sees_one_letter_and_the_domain_of_an_email(parts: tuple[str, str]) -> None:
    local, domain = parts
    address = f"{local}@{domain}"
    assert masked("email", address) == f"{local[0]}***@{domain}"
    assert shown_address("email", address, admin=True) == address


@given(
    host=st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=12),
    path=st.text(alphabet=string.ascii_lowercase + "/", max_size=30),
)
def test_a_non_admin_sees_the_host_of_a_webhook_and_nothing_of_a_chat_url(
    host: str, path: str
) -> None:
    url = f"https://{host}.example/{path}"
    assert masked("webhook", url) == f"https://{host}.example/***"
    assert masked("chat", f"tgram://{host}{path}/") == "tgram://***"


@given(digits=st.text(alphabet="0123456789", min_size=0, max_size=15))
def test_a_phone_number_keeps_at_most_its_last_two_digits(digits: str) -> None:
    shown = masked("sms", digits)
    assert shown.startswith("***")
    assert len(shown.removeprefix("***")) <= 2


@given(value=st.text(max_size=40), dev_mode=st.booleans())
def test_a_short_secret_is_refused_and_a_default_one_only_works_in_dev_mode(
    value: str, dev_mode: bool
) -> None:
    problems = secret_problems(dev_mode, {"TIENDO_X_SECRET": value})
    if len(value) < MIN_SECRET_LENGTH:
        assert problems == [
            f"TIENDO_X_SECRET is {'empty' if not value else 'too short'}: "
            f"set at least {MIN_SECRET_LENGTH} characters"
        ]
    elif value.startswith("dev-"):
        assert bool(problems) is not dev_mode
    else:
        assert problems == []
