"""Plan validation: the shipped examples are valid; every problem of a bad file is reported at
its line; secrets are refused; whole-plan checks (references, cycles, objectives) run too."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import imagekit.cli.plan_cmds  # noqa: F401  (registers the commands on the CLI)
from imagekit.cli import main
from imagekit.errors import PlanInvalid
from imagekit.plans.load import load_plan, load_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "templates" / "plans").glob("*.yaml"))

GOOD = """\
version: 1
name: shop
aws: {region: eu-west-1}
sources:
  web: {name: "web-*"}
  db: {ami: ami-0123456789abcdef0, instance_type: r5.large}
stores:
  primary: {name: main, url: /srv/imagekit}
objectives: {rpo: 26h}
targets:
  lab:
    provider: local
    stack:
      db: {ports: [22, 5432], health: ["tcp:5432"]}
      web: {depends_on: [db], ports: [22, 80], health: ["http:80/"]}
"""


def problems(text: str) -> list[tuple[int, str]]:
    loaded = load_text(textwrap.dedent(text), "plan.yaml")
    assert loaded.plan is None
    return [(p.line, p.message) for p in loaded.problems]


def lines_of(found: list[tuple[int, str]], needle: str) -> list[int]:
    return [line for line, message in found if needle in message]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    plan = load_plan(path)
    assert plan.targets and plan.stores.primary


def test_good_plan_and_derived_values() -> None:
    loaded = load_text(GOOD, "plan.yaml")
    assert loaded.problems == () and loaded.plan is not None
    plan = loaded.plan
    assert plan.boot_order("lab") == [["db"], ["web"]]
    assert plan.rpo("web") == 26 * 3600 and plan.region("db") == "eu-west-1"
    assert plan.sources["web"].describe_filters() == {}
    assert plan.schedule.interval == 86400


def test_every_problem_at_its_line() -> None:
    found = problems(
        """\
        version: 1
        name: Shop
        sources:
          web:
            name: "web-*"
            colour: blue
          db: {region: eu-west-1}
        stores:
          primary: {name: main, url: "ftp://x"}
        objectives: {rpo: soon}
        schedule: {every: 5h}
        """
    )
    assert lines_of(found, "name: String should match") == [2]
    assert lines_of(found, "unknown key 'colour'") == [6]
    assert lines_of(found, "select the AMI") == [7]
    assert lines_of(found, "unknown store scheme") == [9]
    assert lines_of(found, "not a duration") == [10]
    assert lines_of(found, "N must divide 24") == [11]


def test_missing_and_duplicate_keys() -> None:
    found = problems(
        """\
        version: 1
        name: shop
        name: shop2
        sources:
          web: {ami: ami-12345678}
        stores:
          primary: {name: main}
        """
    )
    assert lines_of(found, "duplicate key 'name'") == [3]
    assert lines_of(found, "stores.primary: missing required key 'url'") == [7]
    assert lines_of(found, "missing required key 'objectives'") == [1]


def test_inline_secrets_are_refused() -> None:
    found = problems(
        """\
        version: 1
        name: shop
        sources: {web: {ami: ami-12345678, region: us-east-1}}
        stores:
          primary:
            name: main
            url: s3://bucket/prefix
            key: {passphrase: hunter2}
            credentials: {env: {key: DR_KEY, secret: "wJalrXUt/nFEMI"}}
          replicas:
            - {name: far, url: "s3://AKIAIOSFODNN7EXAMPLE:x@bucket"}
        objectives: {rpo: 2d}
        targets:
          t:
            provider: gcp
            settings: {project: p, client_secret: abc}
            stack: {web: {user_data: {variables: {cert: "-----BEGIN PRIVATE KEY-----"}}}}
        """
    )
    assert lines_of(found, "key.passphrase: secrets are never written") == [8]
    assert lines_of(found, "not an environment variable name") == [9]
    assert lines_of(found, "carries credentials before '@'") == [11]
    assert lines_of(found, "client_secret: secrets are never written") == [16]
    assert lines_of(found, "looks like a secret") == [11, 17]
    # The secret itself is never echoed back.
    assert not any("hunter2" in m or "wJalr" in m or "AKIAIOS" in m for _, m in found)


def test_whole_plan_checks() -> None:
    found = problems(
        """\
        version: 1
        name: shop
        aws: {region: eu-west-1}
        sources:
          web: {name: "web-*", image_name: app}
          api: {name: "api-*", image_name: app, rpo: 30m}
        stores:
          primary: {name: main, url: /srv/a}
          replicas:
            - {name: main, url: /srv/b}
            - {name: c, url: /srv/a/}
        objectives: {rpo: 12h}
        targets:
          lab:
            provider: local
            stack:
              web:
                depends_on: [api, cache]
                health: ["http:8080/"]
                user_data: {template: nope.j2, variables: {role: x}}
              api: {depends_on: [web], image: db}
        """
    )
    assert lines_of(found, "store name 'main' is used twice") == [10]
    assert lines_of(found, "same store as 'main'") == [11]
    assert lines_of(found, "also role 'web'") == [6]
    assert lines_of(found, "RPO 12h is shorter than the schedule interval") == [12]
    assert lines_of(found, "RPO 30m is shorter") == [6]
    assert lines_of(found, "no role 'cache' in this stack") == [18]
    assert lines_of(found, "port 8080, not in ports") == [19]
    assert lines_of(found, "no packaged template 'nope.j2'") == [20]
    assert lines_of(found, "role: set by imagekit itself") == [20]
    assert lines_of(found, "no source role 'db'") == [21]
    assert lines_of(found, "depends_on forms a cycle") == [16]


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("version: 1\nname: [unclosed\nsources: {}\n")
    with pytest.raises(PlanInvalid, match=r"plan.yaml:\d+: not valid YAML"):
        load_plan(path)


def test_cli_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(GOOD.replace("r5.large}", "r5.large, colour: red}"))
    assert main(["plan", "validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == f"{path}:6: sources.db: unknown key 'colour'\n"
    assert "1 problem" in err

    path.write_text(GOOD)
    assert main(["plan", "validate", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and doc["plan"]["targets"] == {"lab": [["db"], ["web"]]}


def test_relative_paths_follow_the_plan_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "plan.yaml"
    path.parent.mkdir()
    path.write_text(GOOD.replace("/srv/imagekit", "stores/main"))
    plan = load_plan(path)
    assert plan.stores.primary.url == str(tmp_path / "conf" / "stores" / "main")


def test_store_fingerprint_is_checked_where_it_is_written() -> None:
    pinned = GOOD.replace(
        "primary: {name: main, url: /srv/imagekit}",
        "primary: {name: main, url: /srv/imagekit, fingerprint: IKF1" + "A" * 32 + "}",
    )
    loaded = load_text(pinned, "plan.yaml")
    assert loaded.plan is not None, loaded.problems
    assert loaded.plan.stores.primary.fingerprint == "ikf1" + "a" * 32  # as init prints it
    bad = GOOD.replace(
        "primary: {name: main, url: /srv/imagekit}",
        "primary: {name: main, url: /srv/imagekit, fingerprint: ikr1nope}",
    )
    found = problems(bad)
    assert lines_of(found, "not a repository fingerprint") == [8]
