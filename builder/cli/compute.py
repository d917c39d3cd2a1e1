"""`aib server …`, `aib provider …` and `aib providers list`: the distributed mode and rented compute."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from builder.cli.base import JsonFlag, _aic_option, _fail, _print_json, _session, _table, app, out
from builder.money import format_aic

server_app = typer.Typer(no_args_is_help=True, help="The distributed mode: a real Prefect server with a pool per tier.")
provider_app = typer.Typer(no_args_is_help=True, help="Offer this machine's GPU or CPU as rented compute.")
providers_app = typer.Typer(no_args_is_help=True, help="Compute offers of provider agents.")
app.add_typer(server_app, name="server")
app.add_typer(provider_app, name="provider")
app.add_typer(providers_app, name="providers")


@server_app.command("start")
def server_start(
    port: Annotated[int, typer.Option(help="Port of the Prefect API (the coordinator API takes the next one)")] = 4200,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="PostgreSQL URL for Prefect's state (default: SQLite)")
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on: 127.0.0.1, or one providers on other machines reach")
    ] = "127.0.0.1",
    coordinator_port: Annotated[
        int | None, typer.Option("--coordinator-port", help="Port of the coordinator API (default: --port + 1)")
    ] = None,
    json_: JsonFlag = False,
) -> None:
    """Start `prefect server` and the coordinator API (the provider protocol), create a work pool per compute tier
    and deploy the flows to each."""
    import ipaddress

    from runtime.distributed import start_server

    if database_url and not database_url.startswith(("postgresql://", "postgresql+asyncpg://")):
        _fail("--database-url must be a PostgreSQL URL (postgresql://user:password@host/db); SQLite is the default")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        _fail(f"--host {host!r} is not an IP address of this machine (e.g. 127.0.0.1 or 10.0.0.5)")
    info = start_server(port, database_url, host=host, coordinator_port=coordinator_port)
    if json_:
        _print_json(info)
    else:
        out.print(f"server running: Prefect API {info['api_url']} (pid {info['pid']}); coordinator API "
                  f"{info['coordinator_url']} (providers on other machines: `aib provider start --coordinator "
                  f"{info['coordinator_url']} …`); work pools: cpu, gpu-small, gpu-medium, gpu-large. Stop it with "
                  "`aib server stop`.", highlight=False)  # fmt: skip


@server_app.command("stop")
def server_stop() -> None:
    """Stop the distributed server."""
    from runtime.distributed import stop_server

    out.print("server stopped" if stop_server() else "no server was running")


@server_app.command("status")
def server_status(json_: JsonFlag = False) -> None:
    """Whether the distributed server runs, and where."""
    from runtime.distributed import server_info

    info = server_info()
    if json_:
        _print_json(info or {"running": False})
    elif info:
        out.print(f"running: {info['api_url']} (pid {info['pid']}, {info['database']})", highlight=False)
    else:
        out.print("not running; `aib server start` starts it")


def _price_per_second(price: str) -> int:
    """'0.36 AIC' per device-hour → wei per device-second."""
    return max(1, round(_aic_option(price, "--price") / 3600))


def _storage_offer(
    gb: float | None, per_month: str | None, per_served: str | None, port: int, listen: str, url: str | None,
    coordinator: str | None,
) -> dict | None:  # fmt: skip
    """The storage offer the options describe (None without --storage); exit 2 with one sentence when they do not
    fit together."""
    if gb is None:
        if per_month is not None or per_served is not None or url is not None:
            _fail("--price-gb-month, --price-gb-served and --storage-url go with --storage GB")
        return None
    if coordinator is None:
        _fail("--storage is offered to a coordinator: add --coordinator URL (shown by `aib server start`)")
    if not 0 < gb <= 1_000_000:
        _fail(f"--storage must be between 0 and 1000000 GB, not {gb:g}")
    if per_month is None:
        _fail("--storage needs --price-gb-month: AIC per GB held for a month, e.g. '0.5'")
    return {"capacity_gb": gb, "price_gb_month_wei": _aic_option(per_month, "--price-gb-month"),
            "price_gb_served_wei": _aic_option(per_served, "--price-gb-served") if per_served else 0,
            "port": port, "listen": listen, "url": url}  # fmt: skip


def _offer_on_chain(provider_id: str, wallet: str | None, stake_wei: int) -> str:
    """With the chain running: the offer's compute-offer asset (registered once, owned by `wallet`) and the stake;
    a few words for the start line. Without a chain, --wallet and --stake are refused."""
    from runtime.chain_node import payments_enabled

    if not payments_enabled():
        if wallet or stake_wei:
            _fail("--wallet and --stake need the chain: start it with `aib chain start` (or set AIB_RPC_URL)")
        return ""
    from runtime.chain_node import address_book, rpc_url
    from runtime.db import ProviderRow
    from runtime.wallet import asset_owners, checked_address, node_errors, signer_address
    from runtime.work_receipts import ensure_offer_asset, offer_ref
    from runtime.work_receipts import stake as stake_on

    url = rpc_url()
    with node_errors(url):
        known = address_book().get("assets", {}).get(offer_ref(provider_id))
        owner = asset_owners([known])[known] if known else None
        wallet = checked_address(wallet) if wallet else owner or signer_address()
        if owner and owner != wallet:
            _fail(f"the offer's asset #{known} is owned by {owner}; start with --wallet {owner} (its owner signs)")
        with _session() as s:
            row = s.get(ProviderRow, provider_id)
            asset = ensure_offer_asset(row, wallet)
            row.asset_id, row.wallet = asset, wallet
            s.commit()
        words = f"; offer asset #{asset} owned by {wallet}"
        if stake_wei:
            stake_on(asset, stake_wei, wallet)
            words += f", {format_aic(stake_wei)} staked"
    return words


def _pid_file(provider_id: str) -> Path:
    from runtime.config import get_settings

    path = get_settings().home / "providers"
    path.mkdir(parents=True, exist_ok=True)
    return path / f"{provider_id}.pid"


@provider_app.command("start")
def provider_start(
    tier: Annotated[
        str | None, typer.Option("--tier", help="cpu, gpu-small (≥ 8 GB), gpu-medium (≥ 24 GB), gpu-large")
    ] = None,
    price: Annotated[str | None, typer.Option("--price", help="AIC per device-hour, e.g. '0.36' or '0.36 AIC'")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where this machine keeps data (reported for locality)")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A name for this offer (default: the host name)")] = None,
    slots: Annotated[int, typer.Option("--slots", help="Runs this machine takes at once")] = 1,
    region: Annotated[str, typer.Option("--region", help="Where the machine is (for data locality)")] = "",
    wallet: Annotated[
        str | None,
        typer.Option("--wallet", help="Address that owns the offer asset, is paid and signs receipts (default: yours)"),
    ] = None,
    stake: Annotated[
        str | None, typer.Option("--stake", help="AIC to stake on the offer (slashed if caught cheating), e.g. '100'")
    ] = None,
    coordinator: Annotated[
        str | None,
        typer.Option(
            "--coordinator",
            help="URL of the coordinator API when this machine is not the coordinator's "
            "(shown by `aib server start`): this machine then speaks only the provider protocol",
        ),
    ] = None,
    storage: Annotated[
        float | None,
        typer.Option(
            "--storage",
            help="With --coordinator: GB of disk this machine offers for sealed shards (instead of, or beside, --tier)",
        ),
    ] = None,
    price_gb_month: Annotated[
        str | None, typer.Option("--price-gb-month", help="With --storage: AIC per GB held for a month, e.g. '0.5'")
    ] = None,
    price_gb_served: Annotated[
        str | None, typer.Option("--price-gb-served", help="With --storage: AIC per GB sent to a leased provider")
    ] = None,
    storage_port: Annotated[int, typer.Option("--storage-port", help="With --storage: port shards are sent on")] = 8710,
    storage_host: Annotated[str, typer.Option("--storage-host", help="With --storage: address to bind")] = "0.0.0.0",
    storage_url: Annotated[
        str | None,
        typer.Option(
            "--storage-url",
            help="With --storage: where shards are fetched from this machine (default: "
            "http://ADDRESS:PORT, the address on the route to the coordinator)",
        ),
    ] = None,
) -> None:
    """Offer this machine: check its hardware against the tier, register the offer (and, with the chain running,
    its compute-offer asset), pull the runs placed on it from its tier's Prefect work pool (runtime/fixed_worker.py)
    and send heartbeats until stopped (Ctrl-C, SIGTERM
    or `aib provider stop`)."""
    import socket

    from runtime.distributed import api_url
    from runtime.providers import (
        OfferError,
        detect_hardware,
        heartbeat,
        held_datasets,
        mark_stopped,
        register_offer,
    )

    if (tier is None) != (price is None):
        _fail("--tier and --price go together: the compute tier offered and its price per device-hour")
    if tier is None and storage is None:
        _fail("offer compute (--tier and --price), storage (--coordinator URL --storage GB --price-gb-month P), "
              "or both")  # fmt: skip
    price_wei = _price_per_second(price) if price is not None else 0
    stake_wei = _aic_option(stake, "--stake") if stake is not None else 0
    if data_dir is not None and not data_dir.is_dir():
        _fail(f"--data-dir {data_dir} is not a folder")
    offered = _storage_offer(storage, price_gb_month, price_gb_served, storage_port, storage_host, storage_url,
                             coordinator)  # fmt: skip
    if coordinator is not None:
        if stake_wei:
            _fail("--stake is not offered over the provider protocol yet; stake from the offer's wallet on chain")
        from builder.cli.provider_agent import run_protocol_agent

        code = run_protocol_agent(coordinator, tier=tier, price_wei=price_wei, name=name, slots=slots, region=region,
                                  wallet=wallet, storage=offered)  # fmt: skip
        raise typer.Exit(code)
    assert tier is not None
    url = api_url()
    hw = detect_hardware()
    name = name or socket.gethostname()
    try:
        with _session() as s:
            row = register_offer(
                s, name=name, tier=tier, price_wei_per_s=price_wei, hardware=hw, slots=slots, region=region,
                datasets=held_datasets(str(data_dir) if data_dir else None), pid=os.getpid(), status="starting",
            )  # fmt: skip
            s.commit()
            pid_ = row.id
    except OfferError as exc:
        _fail(str(exc))
    try:
        on_chain = _offer_on_chain(pid_, wallet, stake_wei)
    except BaseException:
        with _session() as s:
            mark_stopped(s, pid_)  # never placed on: it did not come online
            s.commit()
        raise
    with _session() as s:
        heartbeat(s, pid_)  # online now that its asset (if paid) exists: runs may be placed on it
        s.commit()
    _pid_file(pid_).write_text(str(os.getpid()))
    from runtime.config import get_settings
    from runtime.distributed import prefect_auth_string
    from runtime.fixed_worker import FixedWorker, run_command

    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")}
    env.update({"PREFECT_API_URL": url, "PREFECT_API_AUTH_STRING": prefect_auth_string(), "AIB_PROVIDER_ID": pid_})
    worker = FixedWorker(pool=tier, queue=pid_, name=pid_, command=run_command, slots=slots, env=env, api_url=url,
                         auth_string=prefect_auth_string(),
                         logs=get_settings().home / "providers" / "logs").start()  # fmt: skip
    out.print(
        f"provider {pid_} online: tier {tier}, {format_aic(price_wei * 3600)} per device-hour, {hw.summary}{on_chain}. "
        f"Ctrl-C or `aib provider stop {pid_}` stops it.",
        highlight=False,
    )
    from builder.cli.provider_agent import heartbeat_until_stopped

    def beat() -> None:
        with _session() as s:
            heartbeat(s, pid_, held_datasets(str(data_dir) if data_dir else None))
            s.commit()

    try:
        code = heartbeat_until_stopped(worker, beat)
    finally:
        with _session() as s:
            mark_stopped(s, pid_)  # no new runs from now on
            s.commit()
        worker.stop()  # no new flow runs
        preempted = preempt_runs(pid_)
        _pid_file(pid_).unlink(missing_ok=True)
        out.print(f"provider {pid_} stopped" + (f"; preempted {preempted} run(s), which resume elsewhere" if preempted
                                                 else ""))  # fmt: skip
    raise typer.Exit(code)


def preempt_runs(pid_: str, timeout: float = 120.0) -> int:
    """Ask every run in progress on this offer to stop at once (PREEMPT_SIGNAL to its flow-run process: the
    running step keeps its last checkpoint) and wait until each has recorded its state; how many there were."""
    import time

    from runtime.db import Run
    from runtime.distributed import PREEMPT_SIGNAL

    with _session() as s:
        running = [(r.id, r.pid) for r in s.query(Run).filter(Run.provider_id == pid_, Run.status == "running")]
    for _, pid in running:
        if pid:
            try:
                os.kill(pid, PREEMPT_SIGNAL)
            except OSError:
                pass
    deadline = time.monotonic() + timeout
    while running and time.monotonic() < deadline:
        with _session() as s:
            if all(s.get(Run, rid).status != "running" for rid, _ in running):
                break
        time.sleep(0.2)
    return len(running)


def _offer_asset(provider_id: str) -> int:
    from runtime.db import ProviderRow

    with _session() as s:
        row = s.get(ProviderRow, provider_id)
    if row is None:
        _fail(f"there is no provider {provider_id!r}; `aib providers list` shows them")
    if row.asset_id is None:
        _fail(f"provider {provider_id} has no offer asset on chain (it was started without a chain running)")
    return int(row.asset_id)


@provider_app.command("serve")
def provider_serve(
    coordinator: Annotated[
        str, typer.Option("--coordinator", help="URL of the coordinator API (shown by `aib server start`)")
    ],
    price: Annotated[
        str, typer.Option("--price-per-1k-calls", help="AIC per 1k calls this machine answers, e.g. '0.002'")
    ],
    port: Annotated[int, typer.Option("--port", help="Port the gateway calls this machine on")] = 8700,
    listen: Annotated[str, typer.Option("--host", help="Address to listen on")] = "0.0.0.0",
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Where the gateway reaches this machine (default: http://ADDRESS:PORT, the "
            "address on the route to the coordinator)",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A name for this host (default: the host name)")] = None,
    wallet: Annotated[
        str | None, typer.Option("--wallet", help="Address that is paid for the calls (default: this machine's key)")
    ] = None,
) -> None:
    """Host trained services on this machine for the coordinator's gateway: it signs in with its wallet, downloads
    the sealed bundles of the services placed on it, and answers the calls the gateway forwards (the gateway checks
    API keys and meters every call; this machine is paid per call it answered) until stopped (Ctrl-C, SIGTERM)."""
    from builder.cli.provider_agent import run_host_agent

    price_wei = _aic_option(price, "--price-per-1k-calls")
    if price_wei % 1000:
        _fail("--price-per-1k-calls must be a whole multiple of 1000 wei (0.000000000000001 AIC)")
    code = run_host_agent(coordinator, listen=listen, port=port, url=url, price_wei=price_wei, name=name,
                          wallet=wallet)  # fmt: skip
    raise typer.Exit(code)


@provider_app.command("stake")
def provider_stake(
    provider_id: Annotated[str, typer.Argument(help="The offer (see `aib providers list`)")],
    amount: Annotated[str, typer.Argument(help="AIC to add to its stake, e.g. '50'")],
) -> None:
    """Add to the stake on an offer, from the wallet that owns its asset (slashed if caught cheating)."""
    from runtime.chain_node import rpc_url
    from runtime.wallet import asset_owners, node_errors
    from runtime.work_receipts import stake, stake_status

    wei, asset = _aic_option(amount, "--stake"), _offer_asset(provider_id)
    with node_errors(rpc_url()):
        owner = asset_owners([asset])[asset]
        tx = stake(asset, wei, owner)
        total = stake_status(asset)["amount_wei"]
    out.print(f"staked {format_aic(wei)} on offer asset #{asset} (now {format_aic(total)}; tx {tx})", highlight=False)


@provider_app.command("unstake")
def provider_unstake(
    provider_id: Annotated[str, typer.Argument(help="The offer (see `aib providers list`)")],
    json_: JsonFlag = False,
) -> None:
    """Get an offer's stake back: the first call asks (it stays slashable for the unstake delay, 7 days), a call
    after the delay withdraws it to the staker."""
    from datetime import UTC, datetime

    from runtime.chain_node import rpc_url
    from runtime.wallet import node_errors
    from runtime.work_receipts import unstake

    asset = _offer_asset(provider_id)
    with node_errors(rpc_url()):
        result = unstake(asset)
    if json_:
        _print_json(result)
        return
    when = datetime.fromtimestamp(result["unstake_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
    if result["outcome"] == "withdrawn":
        out.print(f"withdrew {format_aic(result['amount_wei'])} to {result['staker']} (tx {result['tx']})",
                  highlight=False)  # fmt: skip
    else:
        verb = "asked to withdraw" if result["outcome"] == "requested" else "a withdrawal was asked for"
        out.print(f"{verb}: {format_aic(result['amount_wei'])} can be withdrawn from {when} by running this "
                  "command again; until then it can still be slashed", highlight=False)  # fmt: skip


@provider_app.command("preempt")
def provider_preempt(
    provider_id: Annotated[str | None, typer.Argument(help="Which offer (default: every agent here)")] = None,
) -> None:
    """Take the machine back now (e.g. for mining): the running step checkpoints and stops, its run resumes on
    another provider, and the agent goes offline. Start it again when the machine is free."""
    provider_stop(provider_id)


@provider_app.command("stop")
def provider_stop(
    provider_id: Annotated[str | None, typer.Argument(help="Which offer (default: every agent here)")] = None,
) -> None:
    """Stop a provider agent started on this machine (its worker stops with it)."""
    from runtime.config import get_settings

    folder = get_settings().home / "providers"
    files = [folder / f"{provider_id}.pid"] if provider_id else sorted(folder.glob("*.pid"))
    pids = []
    for f in files:
        try:
            pid = int(f.read_text())
            os.kill(pid, signal.SIGTERM)
            pids.append(pid)
        except (OSError, ValueError):
            f.unlink(missing_ok=True)
    if provider_id and not pids:
        _fail(f"no running provider agent {provider_id} on this machine; `aib providers list` shows the offers")
    # Wait until each agent has preempted its runs and exited: then the machine is really free.
    import time

    from runtime.processes import pid_alive

    deadline = time.monotonic() + 180
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if pid_alive(p)]
        time.sleep(0.2)
    if pids:
        _fail(f"provider agent(s) {', '.join(map(str, pids))} did not stop within 180 s", 1)
    out.print(f"stopped {len(files)} provider agent(s)")


def _listing(rows_of: Any, json_: bool, empty: str, columns: list[str], shown: Any) -> None:
    """Rows read by `rows_of(session)`, printed as JSON or as a table of `columns` (`shown(row)` formats one row),
    or the sentence `empty` when there are none."""
    with _session() as s:
        rows = rows_of(s)
    if json_:
        _print_json(rows)
    elif not rows:
        out.print(empty, highlight=False)
    else:
        _table(columns, [shown(r) for r in rows])


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


@providers_app.command("list")
def providers_list(json_: JsonFlag = False) -> None:
    """Every compute offer: tier, price, hardware, reputation, load and whether it is online."""
    from runtime.providers import offer_rows

    _listing(offer_rows, json_,
             "no provider has offered compute yet; `aib provider start --tier cpu --price 0.36` offers this one",
             ["id", "name", "tier", "price/h", "memory", "load", "reputation", "online", "where"],
             lambda r: {**r, "price/h": format_aic(r["price_per_hour_wei"]), "memory": f"{r['memory_gb']:g} GB",
                        "load": f"{r['load']}/{r['slots']}", "reputation": f"{r['reputation']:.2f}",
                        "online": _yes(r["online"]),
                        "where": "other machine" if r["via"] == "api" else "this machine"})  # fmt: skip


@providers_app.command("hosts")
def providers_hosts(json_: JsonFlag = False) -> None:
    """Every machine hosting services (`aib provider serve`): price per 1k calls, reputation, what it serves."""
    from runtime.protocol.hosting import host_rows

    _listing(host_rows, json_,
             "no machine hosts services yet; `aib provider serve --coordinator URL --price-per-1k-calls 0.002` "
             "offers one",
             ["id", "name", "price/1k calls", "reputation", "online", "services", "url"],
             lambda r: {**r, "price/1k calls": format_aic(r["price_per_1k_calls_wei"]),
                        "reputation": f"{r['reputation']:.2f}", "online": _yes(r["online"]),
                        "services": ", ".join(f"{k} ({v})" for k, v in r["services"].items()) or "-"})  # fmt: skip


@providers_app.command("stores")
def providers_stores(json_: JsonFlag = False) -> None:
    """Every machine offering storage (`aib provider start --storage`): capacity, what it holds, prices, reputation."""
    from runtime.protocol.storage import store_rows

    _listing(store_rows, json_,
             "no machine offers storage yet; `aib provider start --coordinator URL --storage 100 --price-gb-month 0.5` "
             "offers one",
             ["id", "name", "region", "held", "replicas", "price/GB-month", "price/GB served", "reputation", "online"],
             lambda r: {**r, "held": f"{r['held_bytes'] / 1e9:.3f} of {r['capacity_bytes'] / 1e9:g} GB",
                        "replicas": ", ".join(f"{k} {v}" for k, v in r["replicas"].items() if v) or "-",
                        "price/GB-month": format_aic(r["price_gb_month_wei"]),
                        "price/GB served": format_aic(r["price_gb_served_wei"]),
                        "reputation": f"{r['reputation']:.2f}", "online": _yes(r["online"])})  # fmt: skip
