"""Commands that write persona and scenario files: validate, import, personas, scenarios,
packs, schema."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from simulate.cli import run_async, stop
from simulate.cli.options import CONCURRENCY, llm_options, setting
from simulate.cli.render import err, out
from simulate.cli.render.authoring import print_persona_stats, print_probe
from simulate.errors import ConfigError
from simulate.simulation import RunConfig, prepare


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--probe",
    is_flag=True,
    help="Also play every scenario against agents that should fail (refuser, staller, echo, "
    "parrot) and list the scenarios one of them passes.",
)
@click.option(
    "--min-score",
    type=click.FloatRange(0, 1),
    metavar="SHARE",
    help="With --probe: exit 1 when fewer than this share of scenario x agent pairs fail.",
)
def validate_command(paths: Sequence[str], probe: bool, min_score: float | None) -> None:
    """Check persona and scenario files (kind guessed per file), templates included."""
    from simulate.loader import split_by_kind

    if min_score is not None and not probe:
        raise click.UsageError("--min-score needs --probe")
    persona_paths, scenario_paths = split_by_kind(paths)
    config = RunConfig(personas=persona_paths, scenarios=scenario_paths, out="validate")
    if not persona_paths or not scenario_paths:
        if probe:
            raise ConfigError("--probe plays scenarios, so it needs persona files too")
        _validate_one_kind(persona_paths, scenario_paths)
        return
    specs = prepare(config).specs
    personas = {s.persona.id for s in specs}
    scenarios = {s.scenario.id for s in specs}
    out.print(
        f"ok: {len(personas)} personas, {len(scenarios)} scenarios, "
        f"{len(specs)} episodes per trial; every template renders"
    )
    if probe:
        from simulate.probe import probe as play_probe

        result = run_async(play_probe(specs), interrupted="the probe was cut short")
        print_probe(result)
        if min_score is not None and result.score < min_score:
            stop(1, f"probe score {result.score:.0%} is below --min-score {min_score:.0%}")


def _validate_one_kind(persona_paths: list[str], scenario_paths: list[str]) -> None:
    from simulate.loader import load_personas, load_scenarios

    if persona_paths:
        out.print(f"ok: {len(load_personas(persona_paths))} personas")
    if scenario_paths:
        out.print(
            f"ok: {len(load_scenarios(scenario_paths))} scenarios "
            "(templates not rendered: give personas too to check them)"
        )


@click.group("import")
def import_group() -> None:
    """Bring existing task and persona collections in as scenario and persona files."""


@import_group.command("tau2")
@click.argument("file", type=click.Path())
@click.option("-o", "--out", "out_file", required=True, metavar="FILE", help="Scenario YAML.")
@click.option("--domain", help="Domain in ids and tags [the tasks' own, else the folder name].")
@click.option("--split", help="Only this split of the split_tasks.json beside FILE (e.g. test).")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def import_tau2_command(
    file: str, out_file: str, domain: str | None, split: str | None, force: bool
) -> None:
    """Scenarios from a tau2-bench task file (tasks.json)."""
    from simulate.authoring.importers import TAU2_LICENSE, TAU2_SOURCE, import_tau2
    from simulate.loader import write_yaml

    scenarios = import_tau2(file, domain=domain, split=split)
    part = f", split {split}" if split else ""
    header = (
        f"Imported by `simulate import tau2` from {Path(file).name}{part}: "
        f"{len(scenarios)} scenarios.\nSource: {TAU2_SOURCE}\n"
        f"Licence: {TAU2_LICENSE}, Copyright (c) 2025 Sierra Research; keep this notice."
    )
    write_yaml(scenarios, out_file, header=header, force=force)
    out.print(f"wrote {len(scenarios)} scenarios to {out_file}")


@import_group.command("personahub")
@click.argument("file", type=click.Path())
@click.option("-o", "--out", "out_file", required=True, metavar="FILE", help="Persona YAML.")
@click.option("--n", "n", required=True, type=int, help="How many personas to sample.")
@setting("--seed", 0, int, "Sampling and Faker seed.")
@setting(
    "--locale",
    "en_US",
    None,
    "Faker locale for names and contact details; several, comma-separated, mix.",
)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def import_personahub_command(
    file: str, out_file: str, n: int, seed: int, locale: str, force: bool
) -> None:
    """Personas from PersonaHub JSON Lines ({"persona": text}); Faker fills the details."""
    from simulate.authoring.importers import PERSONAHUB_LICENSE, import_personahub
    from simulate.loader import write_yaml

    personas = import_personahub(file, n, seed=seed, locale=locale)
    header = (
        f"Imported by `simulate import personahub` from {Path(file).name}: {len(personas)} "
        f"personas, seed {seed}, locale {locale}.\n"
        "Source: PersonaHub (https://github.com/tencent-ailab/persona-hub, arXiv:2406.20094); "
        "names and contact details are Faker's.\n"
        f"Licence: {PERSONAHUB_LICENSE} (non-commercial, share-alike): do not ship it in a "
        "commercial product."
    )
    write_yaml(personas, out_file, header=header, force=force)
    out.print(f"wrote {len(personas)} personas to {out_file}")


@import_group.command("conversations")
@click.argument("file", type=click.Path())
@click.option("-o", "--out", "out_dir", required=True, metavar="REF/", help="Reference folder.")
@setting(
    "--format",
    "auto",
    click.Choice(["auto", "openai", "taskmaster", "run"]),
    "openai: chat JSONL with `messages`; taskmaster: Taskmaster JSON; run: a run folder.",
    dest="fmt",
)
@click.option("--mask-pii", is_flag=True, help="Mask e-mails, phone and card numbers.")
@click.option("--source", help="Where the conversations come from [the format's, else the file].")
@click.option("--license", "license_", metavar="ID", help="Their licence, e.g. CC-BY-4.0.")
@click.option("--force", is_flag=True, help="Replace the reference set in REF/.")
@click.option(
    "--draft-scenarios",
    type=click.Path(dir_okay=False),
    metavar="OUT.yaml",
    help="Also propose scenarios (and OUT.personas.yaml personas) from the conversations.",
)
@setting(
    "--drafts", 30, click.IntRange(1, 1000), "Conversations to draft from, spread over their kinds."
)
@setting("--seed", 0, int, "Sampling seed of drafts.")
@click.option("--llm", "model", metavar="MODEL", help="Richer drafts written by this model.")
@llm_options
def import_conversations_command(
    file: str,
    out_dir: str,
    fmt: str,
    mask_pii: bool,
    source: str | None,
    license_: str | None,
    force: bool,
    draft_scenarios: str | None,
    drafts: int,
    seed: int,
    model: str | None,
    **options: Any,
) -> None:
    """Real conversations as a reference set (the run folder's shape) for `simulate realism`."""
    from simulate.authoring.conversations import (
        mask_conversation,
        read_conversations,
        reference_source,
        write_reference,
    )

    flags = [name for name, value in options.items() if value]
    if (flags or model) and not draft_scenarios:
        flag = f"--{flags[0].replace('_', '-')}" if flags else "--llm"
        raise click.UsageError(f"{flag} only applies with --draft-scenarios OUT.yaml")
    if draft_scenarios:
        from simulate.loader import refuse_overwrite

        refuse_overwrite(draft_scenarios, force)
    conversations, chosen = read_conversations(file, fmt)
    if mask_pii:
        conversations = [mask_conversation(c) for c in conversations]
    origin = reference_source(chosen, file, source=source, license=license_, masked=mask_pii)
    folder = write_reference(conversations, out_dir, origin, masked=mask_pii, force=force)
    users = sum(1 for c in conversations for m in c.messages if m.role == "user")
    out.print(
        f"wrote {len(conversations)} conversations ({users} user messages, {chosen}) to {folder}"
    )
    out.print(f"source: {origin.source} · licence: {origin.license}")
    if draft_scenarios:
        from simulate.authoring.drafts import write_drafts
        from simulate.llm.pool import EndpointFlags

        endpoint = EndpointFlags(use_cache=not options.pop("no_cache"), **options)
        with err.status(f"drafting with {model}") if model else nullcontext():
            written = run_async(
                write_drafts(
                    conversations,
                    origin,
                    draft_scenarios,
                    n=drafts,
                    seed=seed,
                    model=model,
                    force=force,
                    endpoint=endpoint,
                ),
                interrupted=f"the reference set is in {folder}; no drafts were written",
            )
        if written.model:
            cost = "" if written.cost_usd is None else f", ${written.cost_usd:.4f}"
            out.print(f"model {written.model}: {written.calls} calls{cost}")
        out.print(f"wrote {written.scenarios} draft scenarios to {written.scenario_file}")
        out.print(f"wrote {written.personas} draft personas to {written.persona_file}")


@click.group("personas")
def personas_group() -> None:
    """Generate persona files with trait coverage, and measure how varied personas are."""


@personas_group.command("generate")
@click.option("--n", "n", required=True, type=click.IntRange(1, 100_000), help="How many personas.")
@setting(
    "--locale",
    "en_US",
    None,
    "Faker locales, comma-separated; personas are spread over them (an axis).",
)
@click.option(
    "--traits",
    "traits_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="YAML `axes:` narrowing built-in axes and adding your own (axis: [levels]).",
)
@setting(
    "--coverage",
    "pairwise",
    click.Choice(["pairwise", "random"]),
    "pairwise: every pair of levels of two axes occurs, then seeded samples; random: samples.",
)
@setting("--seed", 0, int, "Coverage and Faker seed.")
@click.option("-o", "--out", "out_file", required=True, metavar="FILE", help="Persona YAML.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@click.option(
    "--enrich",
    metavar="llm:MODEL",
    help="Have a model write each persona a backstory and way of speaking (one call each).",
)
@setting("--concurrency", 8, CONCURRENCY, "Personas enriched at once.")
@llm_options
def personas_generate_command(
    n: int,
    locale: str,
    traits_file: str | None,
    coverage: str,
    seed: int,
    out_file: str,
    force: bool,
    enrich: str | None,
    concurrency: int,
    **options: Any,
) -> None:
    """Personas with Faker facts per locale and trait levels covered pairwise (or sampled)."""
    from simulate.authoring.personas import PersonaGeneration, generate_persona_file

    flags = [name for name, value in options.items() if value]
    if flags and not enrich:
        raise click.UsageError(
            f"--{flags[0].replace('_', '-')} only applies with --enrich llm:MODEL"
        )
    config = PersonaGeneration(
        n=n,
        out=out_file,
        locale=locale,
        traits_file=traits_file,
        coverage=coverage,  # type: ignore[arg-type]
        seed=seed,
        force=force,
        enrich=enrich,
        concurrency=concurrency,
        use_cache=not options.pop("no_cache"),
        **options,
    )
    with err.status(f"enriching {n} personas with {enrich}") if enrich else nullcontext():
        result = run_async(
            generate_persona_file(config), interrupted=f"nothing was written to {out_file}"
        )
    for row in result.usage:
        cost = "" if row.cost_usd is None else f", ${row.cost_usd:.4f}"
        out.print(f"model {row.model}: {row.calls} calls{cost}")
    if result.covering is not None:
        how = (
            f"{result.covering} cover every pair of levels of {result.varied_axes} axes, "
            f"{n - result.covering} sampled"
        )
    else:
        how = f"sampled over {result.varied_axes} axes"
    out.print(f"wrote {len(result.personas)} personas to {out_file} ({how})")


@personas_group.command("stats")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@setting(
    "--threshold",
    0.8,
    click.FloatRange(0, 1, min_open=True),
    "Jaccard similarity of word 3-grams from which two descriptions are near-duplicates.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def personas_stats_command(paths: Sequence[str], threshold: float, as_json: bool) -> None:
    """Coverage and diversity of persona files: levels per axis, pairs covered, distinct-n."""
    from simulate.authoring.diversity import persona_stats
    from simulate.loader import load_personas

    stats = persona_stats(load_personas(paths), threshold=threshold)
    if as_json:
        click.echo(json.dumps(stats.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    print_persona_stats(stats)


@click.group("scenarios")
def scenarios_group() -> None:
    """Write scenario files: proposed by a model, or expanded from templates."""


@scenarios_group.command("generate")
@click.option(
    "--agent",
    "agent_file",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Markdown description of the agent: what it does, its rules, its tools.",
)
@click.option("--n", "n", required=True, type=int, help="How many scenarios to propose.")
@click.option(
    "--llm",
    "model",
    metavar="MODEL",
    help="Model that writes them: gpt-4o-mini, openai:MODEL or llm:MODEL [models.user].",
)
@setting("--seed", 0, int, "Sampling seed.")
@click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature.")
@click.option("-o", "--out", "out_file", required=True, metavar="FILE", help="Scenario YAML.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@llm_options
def scenarios_generate_command(no_cache: bool, **options: Any) -> None:
    """Propose scenarios for an agent: happy paths, edge cases, policy violations, multi-intent."""
    from simulate.authoring.scenarios import GenerateConfig, generate

    options["out"] = options.pop("out_file")
    result = run_async(
        generate(GenerateConfig(use_cache=not no_cache, **options)),
        interrupted="nothing was written",
    )
    kinds: dict[str, int] = {}
    for scenario in result.scenarios:
        kinds[scenario.tags[-1]] = kinds.get(scenario.tags[-1], 0) + 1
    mix = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
    cost = "" if result.cost_usd is None else f", ${result.cost_usd:.4f}"
    out.print(f"wrote {len(result.scenarios)} scenarios ({mix}) to {result.path}")
    out.print(f"model {result.model}: {result.calls} calls{cost}")


@scenarios_group.command("expand")
@click.argument("file", type=click.Path())
@click.option("-o", "--out", "out_file", required=True, metavar="FILE", help="Scenario YAML.")
@click.option(
    "--sample",
    type=int,
    metavar="N",
    help="Keep N combinations of each templated scenario, drawn with --seed [all].",
)
@setting("--seed", 0, int, "Sampling seed.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def scenarios_expand_command(
    file: str, out_file: str, sample: int | None, seed: int, force: bool
) -> None:
    """Write the concrete scenarios of a file whose scenarios have `variables`."""
    from simulate.authoring.scenarios import expand_scenarios
    from simulate.loader import refuse_overwrite, write_yaml

    refuse_overwrite(out_file, force)
    scenarios = expand_scenarios(file, sample=sample, seed=seed)
    how = "cross product" if sample is None else f"{sample} per template, seed {seed}"
    header = (
        f"Expanded by `simulate scenarios expand` from {Path(file).name} ({how}): "
        f"{len(scenarios)} scenarios."
    )
    write_yaml(scenarios, out_file, header=header, force=force)
    out.print(f"wrote {len(scenarios)} scenarios to {out_file}")


@click.group("packs")
def packs_group() -> None:
    """Stress-test packs that ship with Simulate: personas and scenarios that probe one failure."""


@packs_group.command("list")
def packs_list_command() -> None:
    """Name, what it probes, and its personas and scenarios, for every pack."""
    from simulate.authoring.packs import list_packs

    table = Table(box=None, pad_edge=False)
    for column in ("pack", "probes", "personas", "scenarios"):
        table.add_column(column, justify="right" if column in ("personas", "scenarios") else "left")
    for pack in list_packs():
        table.add_row(
            pack.name, pack.description, str(len(pack.personas)), str(len(pack.scenarios))
        )
    out.print(table)
    out.print("add to a folder: simulate packs add NAME... -o DIR")


@packs_group.command("add")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("-o", "--out", "out_dir", required=True, metavar="DIR", help="Folder to write to.")
@click.option("--force", is_flag=True, help="Overwrite pack files already in DIR.")
def packs_add_command(names: tuple[str, ...], out_dir: str, force: bool) -> None:
    """Copy packs into DIR/personas/<pack>.yaml and DIR/scenarios/<pack>.yaml."""
    from simulate.authoring.packs import add_packs

    written = add_packs(names, out_dir, force=force)
    for path in written:
        out.print(f"wrote {path}")
    folder = Path(out_dir)
    out.print(
        f"play them: simulate run --personas {folder / 'personas'} "
        f"--scenarios {folder / 'scenarios'} --target SPEC --out RUN"
    )


@click.command("schema")
@setting(
    "--out",
    ".",
    click.Path(file_okay=False),
    "Folder for persona.schema.json and scenario.schema.json.",
    dest="out_dir",
)
def schema_command(out_dir: str) -> None:
    """Write JSON schemas of persona and scenario files, for editors' YAML validation."""
    from simulate.loader import write_schemas

    for path in write_schemas(out_dir):
        out.print(f"wrote {path}")
