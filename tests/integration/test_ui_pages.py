"""Every workbench page renders without an exception and its forms do what they say (Streamlit AppTest).

AppTest runs a page script in-process; the canvas is a custom component AppTest cannot drive, so edges
are made here through the Connections form (the browser tests drive the canvas itself).
"""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

PAGES = Path(__file__).resolve().parents[2] / "builder" / "ui" / "pages"


def page(name: str, **state) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}_page.py"), default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def test_templates_page_opens_a_template_as_the_draft():
    at = page("templates")
    shown = texts(at.subheader)
    assert shown.index("faq-chatbot") == shown.index("faq-chatbot-fast") - 1  # the bot, then its smaller twin
    click(at, "use-faq-chatbot")
    draft = at.session_state["draft"]
    assert list(draft.blocks) == ["faq", "encoder", "classifier", "api"]
    assert (draft.base_dir / "pipeline.yaml").exists() and (draft.base_dir / "data" / "faq.csv").exists()


def test_builder_from_nothing_add_connect_refuse_and_validate():
    at = page("builder")
    at.text_input(key="new-name").input("my-bot")
    at.button(key="FormSubmitter:new-pipeline-Start an empty pipeline").click().run()
    assert not at.exception and at.session_state["draft"].data["name"] == "my-bot"
    for ref in ("chat.faq-csv@1.0.0", "service.api@1.0.0", "chat.minilm-encoder@1.0.0"):
        click(at, f"add-{ref}")
    draft = at.session_state["draft"]
    assert list(draft.blocks) == ["faq-csv", "api", "minilm-encoder"]
    assert any("problem(s) to fix" in e for e in texts(at.error))
    assert at.button(key="run").disabled
    at.selectbox(key="connect-from").select("faq-csv")
    at.selectbox(key="connect-to").select("api")
    at.button(key="FormSubmitter:connect-Connect").click().run()
    assert "Cannot connect faq-csv to api: faq-csv gives examples (TextPairs) but api takes model (Model)" in " ".join(
        texts(at.error)
    )
    at.selectbox(key="connect-to").select("minilm-encoder")
    at.button(key="FormSubmitter:connect-Connect").click().run()
    assert at.session_state["draft"].edges == ["faq-csv.examples -> minilm-encoder.examples"]


def test_builder_yaml_edit_with_an_out_of_range_value_is_reported_with_its_path():
    at = page("templates")
    click(at, "use-faq-chatbot")
    at = page("builder", draft=at.session_state["draft"], selected_node="classifier")
    assert any(s == "The pipeline is valid." for s in texts(at.success))
    assert any(m.label == "Quoted price" for m in at.metric)
    yaml_box = next(t for t in at.text_area if t.label.startswith("Edit the YAML"))
    yaml_box.input(yaml_box.value.replace("epochs: 30", "epochs: 0")).run()
    click(at, "apply-yaml")
    assert any("blocks.classifier.params.epochs" in m and "must be ≥ 1, got 0" in m for m in texts(at.markdown))
    assert at.button(key="run").disabled


def test_builder_upload_of_the_wrong_kind_is_refused_beside_the_uploader():
    at = page("templates")
    click(at, "use-faq-chatbot")
    draft = at.session_state["draft"]
    at = page("builder", draft=draft, selected_node="faq")
    before = (draft.base_dir / "pipeline.yaml").read_text()  # now with the canvas layout
    files = sorted(p.name for p in (draft.base_dir / "data").iterdir())
    at.file_uploader(key="up-faq-path").set_value(("faq.csv", b"only,two\ncolumns,here\n", "text/csv")).run()
    assert not at.exception
    assert any(e.startswith("faq.csv") for e in texts(at.error))
    assert (draft.base_dir / "pipeline.yaml").read_text() == before  # nothing stored
    assert sorted(p.name for p in (draft.base_dir / "data").iterdir()) == files


def test_runs_page_shows_a_finished_run_with_cost_and_steps(trained):
    at = page("runs", selected_run=trained["run_id"])
    assert any(trained["pipeline"] in s for s in texts(at.subheader))
    assert len(at.progress) == len(trained["steps"])
    assert any(m.label == "Accuracy" for m in at.metric)
    assert any(m.label == "Total" for m in at.metric)


def test_services_page_answers_a_question_and_creates_a_key_once(trained):
    from sqlalchemy import func, select

    from runtime.db import Usage, session_factory

    def calls() -> int:
        with session_factory()() as s:
            return s.scalar(select(func.count()).where(Usage.service_id == trained["service_id"]))

    at = page("services", selected_service=trained["service_id"])
    before = calls()
    at.text_area(key="try-text").input("I forgot my password, help")
    at.button(key="FormSubmitter:try-it-Ask").click().run()
    assert not at.exception
    assert any(s.startswith("Click 'Forgot password'") for s in texts(at.success)), (
        texts(at.success),
        texts(at.error),
        [j.value for j in at.json],
    )
    assert calls() == before + 1  # billed like an API call
    at.text_area(key="try-text").input("")
    at.button(key="FormSubmitter:try-it-Ask").click().run()
    assert any("text" in e for e in texts(at.error))
    click(at, "create-key")
    assert any("shown only once" in w for w in texts(at.warning))
    secret = at.session_state[f"new-key-{trained['service_id']}"]
    assert secret in [c.value for c in at.code]
    at.run()  # any later run of the page (a click elsewhere, the next visit)
    assert not at.exception, [e.value for e in at.exception]
    assert not any("shown only once" in w for w in texts(at.warning))
    assert secret not in [c.value for c in at.code]


def test_marketplace_lists_blocks_and_previews_a_data_block_on_template_data():
    at = page("marketplace")
    at.selectbox(key="market-detail").select("chat.faq-csv@1.0.0").run()
    assert not at.exception
    assert any("Random sample" in m for m in texts(at.markdown))
    assert len(at.dataframe) >= 3  # the catalog, the parameters, the sample
    at.text_input(key="market-search").input("no-such-block").run()
    assert "No block matches the search." in texts(at.info)


def test_wallet_renders_with_or_without_a_chain():
    at = page("wallet")
    assert texts(at.title) == ["Wallet"]


def test_provide_publishes_a_dataset_refuses_bad_input_and_the_builder_offers_it():
    faq = (Path(__file__).resolve().parents[2] / "templates" / "data" / "faq.csv").read_bytes()
    own = faq + faq.splitlines(keepends=True)[1]  # a dataset of its own (other tests publish the template's)
    at = page("provide")
    assert texts(at.title) == ["Provide"]
    at.button(key="FormSubmitter:publish-Publish").click().run()
    assert "Choose a data file to publish." in texts(at.error)
    at.file_uploader(key="provide-file").set_value(("bad.csv", b"only,two\ncolumns,here\n", "text/csv"))
    at.text_input[0].input("Bad one")
    at.text_input[3].input("0x00000000000000000000000000000000000000aa")
    at.button(key="FormSubmitter:publish-Publish").click().run()
    assert not at.exception and any(e.startswith("bad.csv:") for e in texts(at.error))
    at.file_uploader(key="provide-file").set_value(("shop.csv", own, "text/csv"))
    at.text_input[0].input("Shop FAQ")
    at.text_input[3].input("0xnot-an-address")
    at.button(key="FormSubmitter:publish-Publish").click().run()
    assert "'0xnot-an-address' is not an Ethereum address" in texts(at.error)
    at.text_input[3].input("0x00000000000000000000000000000000000000aa")
    at.text_input[2].input("ten")
    at.button(key="FormSubmitter:publish-Publish").click().run()
    assert any(e.startswith("Price:") for e in texts(at.error))
    at.text_input[2].input("0.002 AIC")
    at.button(key="FormSubmitter:publish-Publish").click().run()
    assert not at.exception, [e.value for e in at.exception]
    published = [s for s in texts(at.success) if s.startswith("Published Shop FAQ as ds-")]
    assert published and "0.002 AIC per run" in published[0]
    assert any("Checksum (SHA-256)" in m for m in texts(at.markdown))

    from runtime.datasets import list_datasets

    ds = next(d for d in list_datasets() if d.name == "Shop FAQ")
    at = page("templates")
    click(at, "use-faq-chatbot")
    at = page("builder", draft=at.session_state["draft"], selected_node="faq")
    at.selectbox(key="dataset-faq").select(ds.id)
    click(at, "use-faq")
    assert at.session_state["draft"].blocks["faq"]["params"] == {"path": str(ds.path)}
    assert any(ds.id in s for s in texts(at.success))
    assert any(m.label == "Quoted price" for m in at.metric)  # still valid, now including the dataset


def test_provide_lists_compute_offers_and_how_to_add_one():
    from runtime.db import session_factory
    from runtime.protocol.hosting import register_host
    from runtime.protocol.storage import register_store
    from runtime.providers import Hardware, register_offer

    wallet = "0x" + "5a" * 20
    with session_factory()() as s:
        row = register_offer(s, name="ui-rig", tier="cpu", price_wei_per_s=10**14, hardware=Hardware((), 4, 8.0))
        host = register_host(s, wallet=wallet, name="ui-host", url="http://10.1.2.3:8700", call_price_wei=2 * 10**15,
                             hardware={})  # fmt: skip
        store = register_store(s, wallet=wallet, name="ui-disk", url="http://10.1.2.4:8710", region="eu",
                               capacity_bytes=10**11, price_gb_month_wei=5 * 10**17, price_gb_served_wei=0)  # fmt: skip
        s.commit()
    at = page("provide")
    assert not at.exception, [e.value for e in at.exception]
    assert any("aib provider start --tier gpu-small" in c.value for c in at.code)
    assert any("aib provider serve --coordinator" in c.value and "--storage 100" in c.value for c in at.code)
    tables = {tuple(d.value.columns): d.value for d in at.dataframe}
    offers = next(t for cols, t in tables.items() if "tier" in cols)
    shown = offers[offers["id"] == row.id]
    assert list(shown["tier"]) == ["cpu"] and list(shown["price / hour"]) == ["0.36 AIC"]
    hosts = next(t for cols, t in tables.items() if "price / 1k calls" in cols)
    assert list(hosts[hosts["id"] == host.id]["price / 1k calls"]) == ["0.002 AIC"]
    stores = next(t for cols, t in tables.items() if "price / GB-month" in cols)
    assert list(stores[stores["id"] == store.id]["held"]) == ["0.000 of 100 GB"]


def test_runs_page_shows_where_a_rented_run_ran_and_its_verification():
    from runtime.db import Run, session_factory, utcnow

    verification = {
        "classifier": {"ok": True, "epochs": 20, "checked": [4, 17], "max_abs_diff": 0.0},
        "kws": {"ok": False, "epochs": 20, "checked": [3], "reason": "epoch 3 replayed to weights 2.1e-02 away"},
        "features": {"ok": None, "reason": "its inputs are not in this machine's cache"},
    }
    with session_factory()() as s:
        s.add(Run(id="run-rented-ui", name="rented", status="failed", error="verification failed", pipeline_yaml="",
                  pipeline_hash="h", overrides=[], plan={}, plan_hash="p", quote_wei=0, created_at=utcnow(),
                  metrics={"accuracy": 0.9, "verification": verification}, provider_id="prov-x",
                  allocation="prov-x (cpu, 8 GB) of 2 eligible provider(s): lowest cost"))  # fmt: skip
        s.commit()
    at = page("runs", selected_run="run-rented-ui")
    assert any("the Resource Allocator chose prov-x (cpu, 8 GB)" in t for t in texts(at.info))
    assert any(t.startswith("Verified classifier: epochs [4, 17] of 20") for t in texts(at.success))
    assert any(t.startswith("Verification of kws failed: epoch 3 replayed") for t in texts(at.error))
    assert any(t.startswith("features was not verified") for t in texts(at.warning))


def test_builder_upload_is_previewed_with_its_detected_format_before_anything_is_stored():
    at = page("templates")
    click(at, "use-faq-chatbot")
    draft = at.session_state["draft"]
    at = page("builder", draft=draft, selected_node="faq")
    before = (draft.base_dir / "pipeline.yaml").read_text()
    rows = ["question;answer"] + [f"où est ma facture {i};Ouvrez Facturation." for i in range(3)]
    rows += [f"mot de passe oublié {i};Utilisez Réinitialiser." for i in range(3)]
    data = ("\r\n".join(rows) + "\r\n").encode("latin-1")  # what Excel saves in France: semicolons, Latin-1
    at.file_uploader(key="up-faq-path").set_value(("shop.csv", data, "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("read as semicolon-separated" in m and "Latin-1" in m for m in texts(at.markdown)), texts(at.markdown)
    shown = at.dataframe[0].value
    assert list(shown["question"])[:1] == ["où est ma facture 0"] and len(shown) == 5
    assert (draft.base_dir / "pipeline.yaml").read_text() == before  # previewed only: nothing stored yet
    assert not (draft.base_dir / "data" / "shop.csv").exists()
    at.button(key="keep-upload-faq-path").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert (draft.base_dir / "data" / "shop.csv").read_bytes() == data
    assert at.session_state["draft"].blocks["faq"]["params"]["path"] == "data/shop.csv"
    assert any(s.startswith("shop.csv stored as data/shop.csv") for s in texts(at.success))


def test_a_pipeline_has_its_own_address_and_comes_back_after_a_reload_and_in_my_pipelines():
    at = page("templates")
    click(at, "use-faq-chatbot")
    draft = at.session_state["draft"]
    at = page("builder", draft=draft)
    assert at.query_params["pipeline"] in (draft.base_dir.name, [draft.base_dir.name])  # the address names it
    at.text_input(key="pipeline-name").input("Shop helper").run()
    assert "name: Shop helper" in (draft.base_dir / "pipeline.yaml").read_text()

    reloaded = AppTest.from_file(str(PAGES / "builder_page.py"), default_timeout=60)  # a new browser session
    reloaded.query_params["pipeline"] = draft.base_dir.name
    reloaded.run()
    assert not reloaded.exception, [e.value for e in reloaded.exception]
    again = reloaded.session_state["draft"]
    assert again.base_dir == draft.base_dir and again.data["name"] == "Shop helper"

    fresh = page("builder")  # no address: the start screen lists the user's pipelines, newest first
    assert "My pipelines" in texts(fresh.subheader)
    assert any(m.startswith("**Shop helper**") for m in texts(fresh.markdown))
    click(fresh, f"open-{draft.base_dir.name}")
    assert fresh.session_state["draft"].data["name"] == "Shop helper"


def test_an_address_naming_a_path_or_an_unknown_pipeline_opens_nothing():
    from builder.ui.actions import workspaces_dir

    secret = workspaces_dir().parent / "secret"
    secret.mkdir(parents=True, exist_ok=True)
    (secret / "pipeline.yaml").write_text("name: not yours\nblocks: {}\n")
    for address in ("../secret", "..%2Fsecret", "/etc", "no-such-pipeline"):
        at = AppTest.from_file(str(PAGES / "builder_page.py"), default_timeout=60)
        at.query_params["pipeline"] = address
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert "draft" not in at.session_state or at.session_state["draft"] is None, address
        assert any("There is no saved pipeline called" in e for e in texts(at.error)), (address, texts(at.error))
