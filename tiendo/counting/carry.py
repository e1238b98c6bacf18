"""Carrying a closed version's figures into the versions that replaced it (docs/units-over-
time.md): the allocation by shares, in Python. Its SQL form is
`aggregator_read.allocate` (aggregator migration 011), which every counting form uses; the
tests hold the two equal, so the model and the database split alike."""

from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction


def allocate(total: int, shares: Sequence[Decimal | Fraction | int]) -> list[int]:
    """Split `total` over `shares` (in the order given) into integers that sum exactly to it:
    each part the floor of its quota, the units left over one each to the largest
    fractional remainders, ties to the earlier share. Shares are normalised by their sum."""
    if not shares:
        return []
    exact = [Fraction(s) for s in shares]
    whole = sum(exact)
    quotas = [total * s / whole for s in exact]
    bases = [q.numerator // q.denominator for q in quotas]
    left_over = total - sum(bases)
    by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - bases[i]), i))
    for i in by_remainder[:left_over]:
        bases[i] += 1
    return bases
