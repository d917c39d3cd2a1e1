"""The documentation's examples are executed, so the docs cannot drift from the product."""

import re
from pathlib import Path

from typer.testing import CliRunner

from builder.cli import app
from builder.errors import ValidationError
from builder.pipeline import parse_pipeline
from builder.plan import compile_plan

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"


def fenced(doc: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (ROOT / doc).read_text(encoding="utf-8"), re.DOTALL)


def test_pipeline_example_in_docs_is_valid():
    example = fenced("docs/pipelines.md", "yaml")[0]
    plan = compile_plan(parse_pipeline(example, TEMPLATES))
    assert [s.node_id for s in plan.steps] == ["faq", "encoder", "classifier", "api"]


def test_validation_output_in_docs_is_what_aib_prints():
    doc = (ROOT / "docs/pipelines.md").read_text(encoding="utf-8")
    shown = doc.split("it prints:\n\n```\n", 1)[1].split("```", 1)[0].strip().splitlines()
    text = (TEMPLATES / "faq-chatbot.yaml").read_text(encoding="utf-8")
    text = text.replace("chat.minilm-encoder@1.0.0", "chat.minilm@1.0.0").replace("epochs: 60", "epochs: 0")
    text = text.replace("classifier.model -> api.model", "classifier.metrics -> api.model")
    try:
        compile_plan(parse_pipeline(text, TEMPLATES))
        raise AssertionError("expected problems")
    except ValidationError as exc:
        assert [str(p) for p in exc.problems] == shown


def test_every_documented_command_exists():
    rows = re.findall(r"^\| `aib ([a-z ]+?)(?: [A-Z\[].*?)?` \|", (ROOT / "docs/cli.md").read_text(), re.MULTILINE)
    assert len(rows) >= 14
    runner = CliRunner()
    for command in rows:
        result = runner.invoke(app, [*command.split(), "--help"])
        assert result.exit_code == 0, (command, result.output)


def test_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text(encoding="utf-8").split("```bash\n", 1)[1].split("```")[0]
    assert [line.split()[0:2] for line in head.strip().splitlines()] == [["make", "run"], ["make", "test"]]
