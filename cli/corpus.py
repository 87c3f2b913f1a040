"""`emovec corpus validate|stats|import`: check, describe and import stimulus corpora."""
from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import click

from emovec.corpus import (
    IMPORT_FORMATS,
    CorpusWarning,
    Violation,
    corpus_stats,
    datasheet_tables,
    import_corpus,
    load_corpus,
    validate_corpus,
)
from emovec.corpus.importers import GENERIC_KINDS
from emovec.corpus.stats import update_datasheet


def _counts(table: Any) -> str:
    parts = [f"{n} {kind} ({lang})" for (kind, lang), n in
             Counter(zip(table["kind"], table["language"])).items()]
    return ", ".join(parts) or "no records"


def _print_violations(violations: list[Violation]) -> None:
    rows = [(v.file if v.line is None else f"{v.file}:{v.line}", v.rule, v.field or "", v.message)
            for v in violations]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(("where", "rule", "field"))]
    click.echo(f"{'where':<{widths[0]}}  {'rule':<{widths[1]}}  {'field':<{widths[2]}}  message")
    for where, rule, fld, message in rows:
        click.echo(f"{where:<{widths[0]}}  {rule:<{widths[1]}}  {fld:<{widths[2]}}  {message}")


@click.group()
def corpus() -> None:
    """Validate, describe and import stimulus corpora (the built-in one when PATH is left out)."""


@corpus.command()
@click.argument("path", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the violations as a JSON list.")
@click.pass_context
def validate(ctx: click.Context, path: str | None, as_json: bool) -> None:
    """Check a corpus against every corpus rule; print a table of violations and exit 1 if any."""
    violations = validate_corpus(path)
    if as_json:
        click.echo(json.dumps([v.to_dict() for v in violations], indent=2, ensure_ascii=False))
    elif violations:
        _print_violations(violations)
        by_rule = Counter(v.rule for v in violations)
        click.echo(f"\n{len(violations)} violation(s): " + ", ".join(f"{n} {r}" for r, n in by_rule.items()))
    if violations:
        ctx.exit(1)
    if not as_json:
        table = load_corpus(path or "emovec", languages=None)
        info = table.attrs["corpus"]
        click.echo(f"ok: {info['name']} {info['version']} ({info['source']}): {len(table)} records, "
                   f"{_counts(table)}; no violations")


@corpus.command()
@click.argument("path", required=False)
@click.option("--tokenizer", metavar="MODEL",
              help="Also count tokens with this model's tokenizer (a model directory, a .gguf file or an alias).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--markdown", is_flag=True, help="Print the generated tables of the datasheet instead.")
@click.option("--datasheet", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Rewrite the generated tables of this datasheet (e.g. corpus/README.md) in place.")
def stats(path: str | None, tokenizer: str | None, as_json: bool, markdown: bool, datasheet: Path | None) -> None:
    """Counts and word (and token) lengths per kind, language and emotion."""
    if markdown or datasheet:
        if tokenizer or as_json:
            raise click.UsageError("--markdown/--datasheet take neither --tokenizer nor --json")
        tables = datasheet_tables(path)
        if datasheet:
            update_datasheet(datasheet, tables)
            click.echo(f"updated the generated tables of {datasheet}")
        else:
            click.echo(tables, nl=False)
        return
    tok = None
    if tokenizer:
        from emovec_store.engine import load_tokenizer  # the one model resolver

        tok = load_tokenizer(tokenizer)
    table = corpus_stats(path, tokenizer=tok)
    info = table.attrs["corpus"]
    # A store records the corpus hash of the languages it loaded (English by default), not of the
    # whole corpus: show both, so the hash in `emovec store info` can be found here.
    by_language = {}
    for lang in sorted(set(table["language"]), key=lambda x: (x != "en", x)):
        sel = load_corpus(path or "emovec", languages=(lang,))
        by_language[lang] = {"sha256": sel.attrs["corpus"]["sha256"], "records": len(sel)}
    if as_json:
        doc = {"corpus": {**info, "sha256_by_language": by_language},
               "stats": json.loads(table.to_json(orient="records"))}
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    total = sum(v["records"] for v in by_language.values())
    click.echo(f"corpus {info['name']} {info['version']} ({info['source']})")
    click.echo(f"corpus hash {info['sha256'][:12]} of all {total:,} records; one language at a time (what "
               "`emovec extract --language L` records and `emovec store info` shows): "
               + ", ".join(f"{lang} {v['sha256'][:12]} ({v['records']:,})" for lang, v in by_language.items()))
    click.echo(table.to_string(index=False, float_format=lambda x: f"{x:.1f}"))


@corpus.command(name="import")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(IMPORT_FORMATS))
@click.argument("src", type=click.Path(exists=True))
@click.argument("dest", type=click.Path())
@click.option("--text-field", help="jsonl/csv: field holding the text [default: text].")
@click.option("--label-field", help="jsonl/csv: field holding the emotion label.")
@click.option("--group-field", help="jsonl/csv: field holding the topic (group for cross-validation).")
@click.option("--id-field", help="jsonl/csv: field holding a unique id [default: <name>.<record number>].")
@click.option("--kind", type=click.Choice(GENERIC_KINDS), help="jsonl/csv: kind of the records [default: external].")
@click.option("--language", help="jsonl/csv: language code of the texts [default: en].")
@click.option("--emotions", help="jsonl/csv: comma-separated list of allowed labels (others are errors).")
@click.option("--name", help="Corpus name [default: the format name or the file stem].")
@click.option("--corpus-version", help="Corpus version [default: src-<hash of the source files>].")
def import_cmd(fmt: str, src: str, dest: str, corpus_version: str | None, **fields: str | None) -> None:
    """Import a corpus from SRC into a new directory DEST in the emovec layout.

    FORMAT is emotion-vector-bench (a directory) or jsonl / csv (a file). Malformed input stops the
    import with the file, line and field, exit code 2, and nothing written.
    """
    options = {k: v for k, v in fields.items() if v is not None}
    if corpus_version is not None:
        options["version"] = corpus_version
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CorpusWarning)
        out = import_corpus(fmt, src, dest, **options)
    for w in caught:
        click.echo(f"note: {w.message}", err=True)
    table = load_corpus(out, languages=None)
    info = table.attrs["corpus"]
    click.echo(f"imported {len(table)} records ({_counts(table)}) into {out}: corpus {info['name']} "
               f"{info['version']}, sha256 {info['sha256'][:12]}. Check it with `emovec corpus validate {out}`.")
