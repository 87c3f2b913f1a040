"""`emovec store info|ls|verify|finalize|export` and `emovec demo`."""
from __future__ import annotations

import json
from pathlib import Path

import click

# emovec_store (zarr, xarray, pandas) is imported inside each command: `emovec --help` stays fast.


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@click.group()
def store() -> None:
    """Inspect, check, finalize and share activation stores."""


@store.command()
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(path: str, as_json: bool) -> None:
    """Models, readouts, shapes, dtypes, sizes, completeness and provenance of a store."""
    import emovec_store

    summary = emovec_store.info(emovec_store.open(path, allow_partial=True))
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    state = "complete" if summary.get("complete") else "INCOMPLETE (not finalized)"
    corpus = summary.get("corpus") or {}
    approx = "≈" if summary.get("size_basis") == "metadata" else ""  # a URL store: sized from its metadata

    def size(n: int | None) -> str:
        return approx + _fmt_bytes(n)

    click.echo(f"store     {summary['location']}  ({state}, schema {summary.get('emovec_schema')}, "
               f"{size(summary.get('stored_bytes'))}{' from array metadata' if approx else ''})")
    click.echo(f"stimuli   {summary['n_stimuli']}  (stimulus-table hash {str(summary.get('stimuli_sha256', '?'))[:12]}:"
               " the rows and labels stored)")
    languages = ", ".join(summary.get("languages") or [])
    records = f"the {languages} records" if languages else "its records"
    limit = f"; --limit {corpus['limit']} of them stored" if corpus.get("limit") else ""
    if corpus.get("sha256"):
        click.echo(f"corpus    {corpus.get('name', '?')} {corpus.get('version', '')}  (corpus hash "
                   f"{str(corpus['sha256'])[:12]} of {records}, as in `emovec corpus stats`{limit})")
    else:
        click.echo(f"corpus    {corpus.get('name', '?')} {corpus.get('version', '')}  (no corpus hash recorded)")
    click.echo(f"created   {summary.get('created')}  finalized {summary.get('finalized')}")
    sw = summary.get("software", {})
    click.echo("software  " + ", ".join(f"{k} {v}" for k, v in sw.items()))
    for model, m in summary["models"].items():
        attrs = m["attrs"]
        click.echo(f"\nmodel {model}  ({size(m['stored_bytes'])})")
        for key in ("model", "source", "architecture", "n_layers", "d_model", "compute_dtype", "device",
                    "layer_convention"):
            if key in attrs:
                click.echo(f"  {key:<17} {attrs[key]}")
        for name, r in m["readouts"].items():
            dims = "×".join(f"{d}={s}" for d, s in zip(r["dims"], r["shape"]))
            click.echo(f"  readout {name:<14} {r['array']} [{dims}] {r['storage_dtype']} "
                       f"chunks {r['chunks']}  batches {r['batches_done']}/{r['batches']}  "
                       f"{size(r['stored_bytes'])}")


@store.command(name="ls")
@click.argument("path")
def ls_cmd(path: str) -> None:
    """List the groups and arrays of a store."""
    import emovec_store

    for line in emovec_store.ls(emovec_store.open(path, allow_partial=True)):
        click.echo(line)


@store.command()
@click.argument("path")
def verify(path: str) -> None:
    """Check the metadata and re-hash every file against the manifest; names each problem and exits 1.

    Derived results (analysis outputs) are listed separately: they are not in the manifest."""
    import emovec_store
    from emovec_store.finalize import derived_groups

    if "://" not in path and not Path(path).exists():
        raise emovec_store.StoreNotFoundError(f"no emovec store at {path!r}")
    problems = emovec_store.verify(path)  # from the files: a store too damaged to open is verified too
    if problems:
        for line in problems:
            click.echo(line, err=True)
        raise emovec_store.IntegrityError(f"{len(problems)} problem(s) in {path}")
    click.echo(f"ok: every chunk file and metadata document of {path} matches its sha256")
    derived = derived_groups(path)
    if derived:
        click.echo(f"derived results (not in the manifest, not checked): {', '.join(derived)}")


@store.command()
@click.argument("path")
def finalize(path: str) -> None:
    """Check every done flag, write the manifest and consolidated metadata, mark the store complete.

    A store that is complete already is left as it is (`emovec store verify` re-checks it)."""
    import emovec_store

    st = emovec_store.open(path, mode="r+", allow_partial=True)
    if st.complete:
        click.echo(f"{path} is finalized already; nothing to do (`emovec store verify {path}` re-checks it)")
        return
    st.finalize()
    click.echo(f"finalized {path}")


@store.command()
@click.argument("path")
@click.option("--zip", "zip_out", type=click.Path(dir_okay=False), help="Write one uncompressed zip file.")
@click.option("--zarr-format", type=click.Choice(["2"]), help="Write a Zarr format 2 copy (needs OUT).")
@click.argument("out", required=False)
def export(path: str, zip_out: str | None, zarr_format: str | None, out: str | None) -> None:
    """Share a finalized store: `--zip OUT.zip`, or `--zarr-format 2 OUT` for older zarr/xarray."""
    import emovec_store

    st = emovec_store.open(path)
    if zip_out:
        click.echo(f"wrote {emovec_store.export_zip(st, zip_out)}")
    elif zarr_format == "2":
        if not out:
            raise click.UsageError("--zarr-format 2 needs an OUT path")
        click.echo(f"wrote {emovec_store.export_zarr2(st, out)}")
    else:
        raise click.UsageError("choose --zip OUT.zip or --zarr-format 2 OUT")


@click.command()
@click.option("--store", "store_path", default="emovec-demo.zarr", show_default=True, type=click.Path())
def demo(store_path: str) -> None:
    """Write a small synthetic store (no model needed) and show it: a check that the install works."""
    import emovec_store
    from emovec_store.demo import write_demo_store

    existed = Path(store_path, "zarr.json").is_file() and emovec_store.open(store_path, allow_partial=True).complete
    st = write_demo_store(Path(store_path))
    click.echo(f"{st.location} is complete already (nothing to write)" if existed else f"wrote {st.location}")
    for line in emovec_store.ls(st):
        click.echo("  " + line)
