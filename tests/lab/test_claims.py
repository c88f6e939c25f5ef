"""Each claim of the references holds, measured with fixed seeds (see pgrad/lab/claims.py for the margins)."""

import pytest

from pgrad.lab.claims import CLAIMS


@pytest.mark.parametrize("number", sorted(CLAIMS))
def test_claim_holds(number):
    claim = CLAIMS[number]()
    print(f"claim {claim.number}: {claim.figure}")
    assert claim.holds, f"claim {claim.number} ({claim.text}) does not hold: {claim.figure}"
