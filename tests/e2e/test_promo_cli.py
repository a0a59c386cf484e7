"""``numbershop promo``: create, list, disable; bad input exits 2 with one line."""

from __future__ import annotations

import pytest

from tests.e2e.test_cli import row_counts, run, run_json, shop_db  # noqa: F401  (fixture)


def test_create_list_disable(shop_db, capsys):  # noqa: F811
    made = run_json(capsys, "promo", "create", "spring", "2.50", "--uses", "3", "--expires", "2099-01-31")
    assert (made["code"], made["max_uses"], made["state"]) == ("SPRING", 3, "active")
    assert made["budget"] == run_json(capsys, "promo", "list")["codes"][0]["budget"]
    code, out, err = run(capsys, "promo", "list")
    assert code == 0 and out.startswith("SPRING: $2.50 each, used 0/3, spent $0.00 of $7.50"), out
    code, out, _ = run(capsys, "promo", "disable", "spring", "--reason", "ended")
    assert (code, out.strip()) == (0, "SPRING disabled")
    code, out, _ = run(capsys, "promo", "disable", "SPRING")
    assert (code, out.strip()) == (0, "SPRING was already disabled")


@pytest.mark.parametrize(
    "argv",
    [
        ["promo", "create", "SPRING", "-1", "--uses", "3"],
        ["promo", "create", "SPRING", "abc", "--uses", "3"],
        ["promo", "create", "SPRING", "1.00", "--uses", "0"],
        ["promo", "create", "S!", "1.00", "--uses", "3"],
        ["promo", "create", "SPRING", "1.00", "--uses", "3", "--expires", "tomorrow"],
        ["promo", "create", "SPRING", "1.00", "--uses", "3", "--expires", "2000-01-01"],
        ["promo", "create", "SPRING", "5.00", "--uses", "3", "--budget", "1.00"],
        ["promo", "disable", "NOSUCH"],
    ],
)
def test_bad_input_exits_2_with_one_line_and_changes_nothing(shop_db, capsys, argv):  # noqa: F811
    before = row_counts(shop_db)
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert row_counts(shop_db) == before


def test_a_code_is_created_once(shop_db, capsys):  # noqa: F811
    assert run(capsys, "promo", "create", "ONCE", "1.00", "--uses", "1")[0] == 0
    code, _out, err = run(capsys, "promo", "create", "once", "1.00", "--uses", "1")
    assert code == 2 and "already exists" in err
