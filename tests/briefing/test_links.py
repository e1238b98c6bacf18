"""The link's token (issue 14): only the notifier's own, unaltered and unexpired, opens."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.notifier.links import Claim, Refusal, sign, verify

SECRET = "test-link-secret"
ISSUED = datetime(2023, 5, 20, 3, 0, tzinfo=UTC)
EXPIRES = ISSUED + timedelta(days=7)
IDS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
    min_size=8,
    max_size=24,
)


@given(IDS, st.integers(0, 7 * 86400 - 1))
def test_a_token_opens_its_link_until_it_expires(link_id: str, seconds: int) -> None:
    token = sign(SECRET, link_id, EXPIRES)
    assert verify(SECRET, token, ISSUED + timedelta(seconds=seconds)) == Claim(link_id, EXPIRES)
    assert verify(SECRET, token, EXPIRES) is Refusal.EXPIRED
    assert verify("another-secret", token, ISSUED) is Refusal.TAMPERED


@given(IDS, st.data())
def test_any_changed_character_is_refused(link_id: str, data: st.DataObject) -> None:
    token = sign(SECRET, link_id, EXPIRES)
    i = data.draw(st.integers(0, len(token) - 1))
    c = data.draw(st.sampled_from("aZ09-_.x"))
    changed = token[:i] + c + token[i + 1 :]
    if changed != token:
        assert verify(SECRET, changed, ISSUED) is Refusal.TAMPERED


def test_a_later_expiry_cannot_be_written_in() -> None:
    token = sign(SECRET, "abcdefgh", EXPIRES)
    link_id, expiry, signature = token.split(".")
    later = f"{link_id}.{int(expiry) + 86400}.{signature}"
    assert verify(SECRET, later, EXPIRES + timedelta(hours=1)) is Refusal.TAMPERED
