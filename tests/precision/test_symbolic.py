import sympy as sp

from mdmlib.precision import symbolic


def test_paper_formula_is_the_law_for_two_classes():
    pis, ours = symbolic.law_from_definition(2)
    paper = symbolic.law_from_paper(pis)
    assert all(symbolic.is_zero_exp_polynomial(a - b) for a, b in zip(ours, paper))
    assert symbolic.is_zero_exp_polynomial(sum(ours) - 1)


def test_zero_test_rejects_what_is_not_zero():
    pis, ours = symbolic.law_from_definition(2)
    paper = symbolic.law_from_paper(pis)
    assert not symbolic.is_zero_exp_polynomial(ours[0] - paper[1])
    # a one-character slip in the formula (K+1-i -> K-i) is caught
    wrong = pis[0] * sp.exp((2 - 1 - 1 - sum(pis) / pis[0]) * symbolic.delta) / sum(pis)
    assert not symbolic.is_zero_exp_polynomial(ours[0] - wrong)
    assert symbolic.is_zero_exp_polynomial(sp.exp(symbolic.delta) * sp.exp(-symbolic.delta) - 1)
