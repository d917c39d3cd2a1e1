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
    text = text.replace("chat.mpnet-encoder@1.0.0", "chat.mpnet@1.0.0").replace("epochs: 30", "epochs: 0")
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


def test_the_readme_own_faq_steps_work_as_written(tmp_path):
    """README "Your own FAQ spreadsheet": copy the templates, point `path` at a FAQ with other answers, delete the
    `heldout_path:` line as the steps say; `aib validate` prints `valid` and `aib preview` shows the user's rows."""
    import shutil

    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Your own FAQ spreadsheet", 1)[1]
    section = section.split("\n## ", 1)[0]
    assert "delete the `heldout_path:` line" in section
    commands = fenced_text(section, "bash")[0].splitlines()
    assert commands[2].split("#")[0].split()[1:] == ["validate", "my-bot/faq-chatbot.yaml"]
    assert "my-bot/data/" in commands[0] and "data/shop.csv" in commands[1]  # the file goes beside the pipeline
    bot = tmp_path / "my-bot"
    shutil.copytree(TEMPLATES, bot)
    (bot / "data" / "shop.csv").write_text(
        "question,answer\nWhen do you open?,We open at 9.\nWhat time do you open?,We open at 9.\n"
        "Do you deliver?,Yes within the city.\nCan you deliver to me?,Yes within the city.\n",
        encoding="utf-8",
    )
    lines = (bot / "faq-chatbot.yaml").read_text(encoding="utf-8").splitlines(keepends=True)
    edited = "".join(
        line.replace("path: data/faq.csv", "path: data/shop.csv") for line in lines if "heldout_path:" not in line
    )
    assert edited.count("data/shop.csv") == 1
    (bot / "faq-chatbot.yaml").write_text(edited, encoding="utf-8")
    runner = CliRunner()
    validated = runner.invoke(app, ["validate", str(bot / "faq-chatbot.yaml")])
    assert validated.exit_code == 0 and validated.output.strip() == "valid", validated.output
    previewed = runner.invoke(app, ["preview", str(bot / "faq-chatbot.yaml"), "faq"])
    assert previewed.exit_code == 0 and "deliver" in previewed.output, previewed.output


def fenced_text(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.DOTALL)
