"""Policy dataclasses, names and the spec language."""

from __future__ import annotations

import dataclasses

import pytest

from isskit.policies import (
    CS,
    IAS,
    ISS,
    Adaptive,
    Cohen,
    Staged,
    load_policy_file,
    parse_policies,
    parse_policy_spec,
)


def test_defaults_follow_the_papers():
    # Cohen et al. 2019 certify with n0 = 100, n = 100,000, alpha = 0.001.
    assert Cohen() == Cohen(n0=100, n=100_000, alpha=0.001)
    iss = ISS(k_bar=100_000, U=0.05, decline="AD")
    # k0 = k_bar / 100 (DESIGN.md), delta = 0.001 (the reference code's grid step), alpha 0.001
    assert (iss.k0, iss.delta, iss.alpha, iss.fresh, iss.decline) == (1000, 0.001, 0.001,
                                                                        False, "ad")
    assert ISS(k_bar=50, U=0.1, decline="rd").k0 == 1  # never a zero pilot


def test_frozen_and_hashable():
    p = IAS(n=26_000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.n = 5
    assert len({p, IAS(n=26_000), IAS(n=26_000.0)}) == 1
    assert ISS(100_000, 0.05, "ad") == ISS(100_000, 0.05, "ad", k0=1000)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: IAS(n=0), r"n \(0\) must be an integer >= 1"),
        (lambda: IAS(n=1.5), r"n \(1.5\) must be an integer"),
        (lambda: IAS(n=10, alpha=1.0), r"alpha \(1.0\) must be in \(0, 1\)"),
        (lambda: Cohen(n0=-3, n=10), r"n0 \(-3\)"),
        (lambda: ISS(k_bar=0, U=0.1, decline="ad"), r"k_bar \(0\)"),
        (lambda: ISS(k_bar=10, U=-0.1, decline="ad"), r"U \(-0.1\) must be a finite number > 0"),
        (lambda: ISS(k_bar=10, U=1.0, decline="rd"), r"U \(1.0\) must be < 1"),
        (lambda: ISS(k_bar=10, U=0.1, decline="xd"), r"decline \('xd'\)"),
        (lambda: ISS(k_bar=10, U=0.1, decline="ad", k0=0), r"k0 \(0\)"),
        (lambda: ISS(k_bar=10, U=0.1, decline="ad", delta=0.3), r"delta \(0.3\) must divide 1"),
        (lambda: ISS(k_bar=10, U=0.1, decline="ad", fresh="yes"), r"fresh \('yes'\)"),
    ],
)
def test_bad_values_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_names_follow_the_paper_shorthand():
    # Chen et al. 2022, Fig. 1: IAS-c1 samples c1 x 10,000; ISS-c1-c2 accelerates IAS-c1
    # at a decline <= c2.
    assert IAS(n=26_000).name == "IAS-2.6"
    assert IAS(n=100_000).name == "IAS-10"
    assert ISS(100_000, 0.05, "ad").name == "ISS-AD-10-0.05"
    assert ISS(500_000, 0.01, "rd").name == "ISS-RD-50-0.01"
    assert Cohen().name == "Cohen-10"
    assert ISS(100_000, 0.05, "ad", k0=500, fresh=True).name == "ISS-AD-10-0.05-k0=500-fresh"
    assert IAS(n=12_345, alpha=0.00001).name == "IAS-1.2345-alpha=0.00001"
    assert Cohen(n0=1000, n=5).name == "Cohen-0.0005-n0=1000"


@pytest.mark.parametrize(
    ("make", "want"),
    [
        # every field that may show, away from its default, in the name's order
        (lambda: Cohen(n0=7, n=20_000, alpha=0.01), "Cohen-2-n0=7-alpha=0.01"),
        (lambda: ISS(100_000, 0.05, "ad", k0=999, delta=0.002, alpha=0.01, fresh=True,
                     mapping="sup"),
         "ISS-AD-10-0.05-k0=999-delta=0.002-alpha=0.01-mapping=sup-fresh"),
        (lambda: ISS(200_000, 0.05, "ad", k0=2000), "ISS-AD-20-0.05"),  # k0's default: k_bar/100
        (lambda: Adaptive(r=0.25, n0=50, stages=(10, 20), alpha=0.01, beta=0.001),
         "Adaptive-r=0.25-n0=50-stages=10/20-alpha=0.01-beta=0.001"),
        (lambda: Adaptive(r=0.5), "Adaptive-r=0.5"),
        (lambda: Staged(r=0.5, stages=(5, 50), alpha=0.01), "Staged-r=0.5-stages=5/50-alpha=0.01"),
        (lambda: CS(r=0.5, alpha=0.01, n_max=1000, faithful=True),
         "CS-KT-r=0.5-alpha=0.01-n_max=1000-faithful"),
        (lambda: CS(r=0.5, method="union", faithful=True), "CS-union-r=0.5"),  # KT only
        (lambda: CS(r=0.5), "CS-KT-r=0.5"),
    ],
)
def test_names_show_each_non_default_field(make, want):
    assert make().name == want


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("ISS-AD-10-0.05", [ISS(100_000, 0.05, "ad")]),
        ("ISS-RD-50-0.01", [ISS(500_000, 0.01, "rd")]),
        ("IAS-2.6", [IAS(26_000)]),
        ("ias-2.6", [IAS(26_000)]),
        ("Cohen-10", [Cohen(100, 100_000)]),
        ("ias n=26000", [IAS(26_000)]),
        ("cohen n0=100 n=100000", [Cohen(100, 100_000)]),
        ("ias n=1e5,2.6e4 alpha=0.01", [IAS(100_000, 0.01), IAS(26_000, 0.01)]),
        (
            "iss decline=ad k_bar=1e5,5e5 U=0.05,0.1 k0=1000",
            [
                ISS(100_000, 0.05, "ad", k0=1000),
                ISS(100_000, 0.1, "ad", k0=1000),
                ISS(500_000, 0.05, "ad", k0=1000),
                ISS(500_000, 0.1, "ad", k0=1000),
            ],
        ),
        (
            "ISS-AD-10-0.05 fresh=false,true",
            [ISS(100_000, 0.05, "ad"), ISS(100_000, 0.05, "ad", fresh=True)],
        ),
        ("ISS-AD-10-0.05-k0=500-fresh", [ISS(100_000, 0.05, "ad", k0=500, fresh=True)]),
        ("iss decline=ad,ad kbar=100_000 u=0.05", [ISS(100_000, 0.05, "ad")]),
    ],
)
def test_specs(spec, want):
    assert parse_policy_spec(spec) == want


def test_names_parse_back():
    grid = parse_policy_spec(
        "iss decline=ad,rd k_bar=20000,1e5 U=0.05,0.5 k0=100,1000 fresh=true,false "
        "alpha=0.001,0.01 delta=0.001,0.0005"
    )
    assert len(grid) == 2**7
    grid += [IAS(n=12_345), Cohen(n0=7, n=3), IAS(n=1, alpha=0.2)]
    for p in grid:
        assert parse_policy_spec(p.name) == [p]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus n=3",
         r"unknown policy kind 'bogus'; valid kinds: adaptive, budget, cohen, cs, ias, iss, "
         r"staged"),
        ("ias m=3", r"unknown parameter 'm' for policy kind 'ias'; valid: n, alpha"),
        ("iss k_bar=1e5 U=0.1 sigma=0.5 decline=ad", r"unknown parameter 'sigma'.*k_bar, U"),
        ("iss k_bar=1e5", r"needs U, decline"),
        ("ias n=1.5e0", r"n \('1.5e0'\) must be an integer"),
        ("ias n=abc", r"n \('abc'\) must be an integer"),
        ("ias n", r"'n' is not key=value"),
        ("ias n=", r"'n=' is not key=value"),
        ("", r"empty"),
        ("ISS-AD-10", r"must read ISS-AD-<k_bar/10\^4>-<U>"),
        ("IAS-2.6-0.1", r"takes one number"),
        ("IAS-0.00001", r"whole number of samples"),
        ("iss decline=ad k_bar=10 U=0.1 fresh=maybe", r"fresh \('maybe'\) must be true or false"),
        ("ISS-AD-10-0.05-colour=red", r"unknown parameter 'colour'"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_policy_spec(spec)


def test_parse_policies_flattens_and_dedupes():
    got = parse_policies(["IAS-10", IAS(n=100_000), "ias n=1e5,26000", Cohen()])
    assert got == [IAS(100_000), IAS(26_000), Cohen()]
    with pytest.raises(ValueError, match="must be a spec string"):
        parse_policies([3])


def test_policy_file(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text(
        'policies = ["ISS-AD-10-0.05", "ias n=26000,50000"]\n'
        "[[policy]]\n"
        'kind = "iss"\n'
        'decline = ["ad", "rd"]\n'
        "k_bar = 1e5\n"
        "U = [0.05, 0.1]\n"
        "fresh = true\n"
        "[[policy]]\n"
        'kind = "cohen"\n'
        "n = 100000\n"
    )
    got = load_policy_file(f)
    assert got == [
        ISS(100_000, 0.05, "ad"),
        IAS(26_000),
        IAS(50_000),
        ISS(100_000, 0.05, "ad", fresh=True),
        ISS(100_000, 0.1, "ad", fresh=True),
        ISS(100_000, 0.05, "rd", fresh=True),
        ISS(100_000, 0.1, "rd", fresh=True),
        Cohen(),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("policies = [", "not valid TOML"),
        ("polices = []", r"unknown key\(s\) \['polices'\]"),
        ("policies = [1]", "must be a list of strings"),
        ('[[policy]]\nkind = "foo"',
         r"kind \('foo'\) must be one of adaptive, budget, cohen, cs, ias, iss, staged"),
        ('[[policy]]\nkind = "ias"\nm = 5', r"unknown parameter 'm' for policy kind 'ias'"),
        ("policies = []", "names no policy"),
    ],
)
def test_bad_policy_files(tmp_path, text, message):
    f = tmp_path / "p.toml"
    f.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_policy_file(f)
    with pytest.raises(ValueError, match="does not exist"):
        load_policy_file(tmp_path / "missing.toml")


def test_params_and_budgets():
    iss = ISS(100_000, 0.05, "ad", k0=500, fresh=True)
    assert iss.params() == {"kind": "iss", "k_bar": 100_000, "U": 0.05, "decline": "ad",
                            "k0": 500, "delta": 0.001, "alpha": 0.001, "fresh": True,
                            "mapping": "paper"}
    assert iss.max_samples == 100_500 and iss.selection_size == 500
    assert ISS(100_000, 0.05, "ad", k0=500).max_samples == 100_000
    assert Cohen(n0=100, n=1000).max_samples == 1100
    assert IAS(n=7).params() == {"kind": "ias", "n": 7, "alpha": 0.001}


def test_mapping_names_psi_lookups():
    # One list of mappings, psi's (the policies used to keep a second copy).
    import isskit.policies.iss as iss_mod
    from isskit.psi import MAPPINGS

    assert not hasattr(iss_mod, "MAPPINGS") and MAPPINGS == ("paper", "sup")
    p = ISS(100_000, 0.1, "rd", mapping="SUP")
    assert p.mapping == "sup" and p.name == "ISS-RD-10-0.1-mapping=sup"
    assert parse_policy_spec(p.name) == [p]
    assert parse_policy_spec("ISS-RD-10-0.1 mapping=paper,sup")[1] == p
    with pytest.raises(ValueError, match=r"mapping \('best'\) must be one of paper, sup"):
        ISS(100_000, 0.1, "rd", mapping="best")
