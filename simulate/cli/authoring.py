"""Commands that write persona and scenario files: validate, import, personas, scenarios,
packs, schema."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from simulate.cli.options import llm_options
from simulate.cli.render import err, out, print_persona_stats
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

        result = asyncio.run(play_probe(specs))
        _print_probe(result)
        if min_score is not None and result.score < min_score:
            sys.exit(1)


def _print_probe(result: Any) -> None:
    """The weak scenarios, each with the agent that passed it and why, then the score."""
    agents = ", ".join(result.agents)
    if result.weaknesses:
        table = Table(
            title="scenarios a counterfactual agent passed (their checks are weak)",
            title_justify="left",
        )
        for column in ("scenario", "agent", "persona", "why it passed"):
            table.add_column(column, overflow="fold")
        for w in result.weaknesses:
            table.add_row(w.scenario_id, w.agent, w.persona_id, w.why)
        out.print(table)
    else:
        out.print(f"probe: no scenario passed by any counterfactual agent ({agents})")
    out.print(
        f"probe score {result.score:.0%}: {result.failing} of {result.pairs} scenario × agent "
        f"pairs fail, as they should ({result.episodes} episodes played against {agents})"
    )


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
    from simulate.authoring.importers import TAU2_LICENSE, TAU2_SOURCE, import_tau2, write_yaml

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
@click.option("--seed", default=0, show_default=True, type=int, help="Sampling and Faker seed.")
@click.option(
    "--locale",
    default="en_US",
    show_default=True,
    help="Faker locale for names and contact details; several, comma-separated, mix.",
)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def import_personahub_command(
    file: str, out_file: str, n: int, seed: int, locale: str, force: bool
) -> None:
    """Personas from PersonaHub JSON Lines ({"persona": text}); Faker fills the details."""
    from simulate.authoring.importers import PERSONAHUB_LICENSE, import_personahub, write_yaml

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


@click.group("personas")
def personas_group() -> None:
    """Generate persona files with trait coverage, and measure how varied personas are."""


@personas_group.command("generate")
@click.option("--n", "n", required=True, type=int, help="How many personas.")
@click.option(
    "--locale",
    default="en_US",
    show_default=True,
    help="Faker locales, comma-separated; personas are spread over them (an axis).",
)
@click.option(
    "--traits",
    "traits_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="YAML `axes:` narrowing built-in axes and adding your own (axis: [levels]).",
)
@click.option(
    "--coverage",
    type=click.Choice(["pairwise", "random"]),
    default="pairwise",
    show_default=True,
    help="pairwise: every pair of levels of two axes occurs, then seeded samples; random: samples.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Coverage and Faker seed.")
@click.option("-o", "--out", "out_file", required=True, metavar="FILE", help="Persona YAML.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@click.option(
    "--enrich",
    metavar="llm:MODEL",
    help="Have a model write each persona a backstory and way of speaking (one call each).",
)
@click.option(
    "--concurrency",
    default=8,
    show_default=True,
    type=click.IntRange(1),
    help="Personas enriched at once.",
)
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
    from simulate.authoring.importers import write_yaml
    from simulate.authoring.personas import (
        EnrichConfig,
        check_locales,
        enrich_model,
        enrich_personas,
        generate_personas,
        generation_header,
        pairwise_rows,
        read_traits,
        refuse_overwrite,
        trait_axes,
    )

    model = enrich_model(enrich) if enrich else None
    flags = [name for name, value in options.items() if value]
    if flags and not model:
        raise click.UsageError(
            f"--{flags[0].replace('_', '-')} only applies with --enrich llm:MODEL"
        )
    refuse_overwrite(out_file, force)
    given = read_traits(traits_file) if traits_file else None
    axes = trait_axes(check_locales(locale), given)
    personas = generate_personas(axes, n, seed=seed, coverage=coverage)  # type: ignore[arg-type]
    command = f"simulate personas generate --n {n} --locale {locale} --coverage {coverage}"
    command += f" --seed {seed}" + (f" --traits {Path(traits_file).name}" if traits_file else "")
    if model:
        command += f" --enrich {enrich}"
        config = EnrichConfig(
            model=model,
            concurrency=concurrency,
            use_cache=not options.pop("no_cache"),
            **options,
        )
        with err.status(f"enriching {len(personas)} personas with {model}"):
            result = asyncio.run(enrich_personas(personas, config))
        personas = result.personas
        for row in result.usage:
            cost = "" if row.cost_usd is None else f", ${row.cost_usd:.4f}"
            out.print(f"model {row.model}: {row.calls} calls{cost}")
    write_yaml(personas, out_file, header=generation_header(command, personas, seed), force=force)
    varied = sum(1 for levels in axes.values() if len(levels) > 1)
    if coverage == "pairwise":
        covering = len(pairwise_rows(axes, seed))
        how = f"{covering} cover every pair of levels of {varied} axes, {n - covering} sampled"
    else:
        how = f"sampled over {varied} axes"
    out.print(f"wrote {len(personas)} personas to {out_file} ({how})")


@personas_group.command("stats")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--threshold",
    default=0.8,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="Jaccard similarity of word 3-grams from which two descriptions are near-duplicates.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def personas_stats_command(paths: Sequence[str], threshold: float, as_json: bool) -> None:
    """Coverage and diversity of persona files: levels per axis, pairs covered, distinct-n."""
    from simulate.authoring.diversity import persona_stats
    from simulate.loader import load_personas

    stats = persona_stats(load_personas(paths), threshold=threshold)
    if as_json:
        click.echo(json.dumps(stats, indent=2, ensure_ascii=False))
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
@click.option("--seed", default=0, show_default=True, type=int, help="Sampling seed.")
@click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature.")
@click.option("-o", "--out", "out_file", required=True, metavar="FILE", help="Scenario YAML.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@llm_options
def scenarios_generate_command(no_cache: bool, **options: Any) -> None:
    """Propose scenarios for an agent: happy paths, edge cases, policy violations, multi-intent."""
    from simulate.authoring.scenarios import GenerateConfig, generate

    options["out"] = options.pop("out_file")
    result = generate(GenerateConfig(use_cache=not no_cache, **options))
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
@click.option("--seed", default=0, show_default=True, type=int, help="Sampling seed.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def scenarios_expand_command(
    file: str, out_file: str, sample: int | None, seed: int, force: bool
) -> None:
    """Write the concrete scenarios of a file whose scenarios have `variables`."""
    from simulate.authoring.importers import write_yaml
    from simulate.authoring.personas import refuse_overwrite
    from simulate.authoring.scenarios import expand_scenarios

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
@click.option(
    "--out",
    "out_dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for persona.schema.json and scenario.schema.json.",
)
def schema_command(out_dir: str) -> None:
    """Write JSON schemas of persona and scenario files, for editors' YAML validation."""
    from simulate.schema import Persona, Scenario

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for name, model in (("persona", Persona), ("scenario", Scenario)):
        path = folder / f"{name}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(), indent=2) + "\n", encoding="utf-8")
        out.print(f"wrote {path}")
