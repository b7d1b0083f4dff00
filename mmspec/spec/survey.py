"""The survey's architecture IDs (package data `survey.json`), which `reference.survey` must use.

The IDs (`NLP-09`, `CV-01`, `BOTH-02`, ...) number the architectures of the survey *Multimodal Deep
Learning* (Akkus et al., 2023) by book section. Each entry names the architecture, its book section and
its paper(s); an entry with `same_as` is a second ID for an architecture listed under another one.
Torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from mmspec.spec.suggest import suggestion_text


@dataclass(frozen=True)
class SurveyEntry:
    """One architecture of the survey."""

    name: str
    section: str
    """Book section where it is described, e.g. "§2.1 State of the art in NLP"."""
    paper: str | None
    """"Authors Year, Title" (several separated by "; "); None for a technique without a paper."""
    same_as: str | None = None
    """The ID this one duplicates (the book lists the model twice)."""


@cache
def survey() -> MappingProxyType[str, SurveyEntry]:
    """ID -> entry, in the order of the book, read once from the package data."""
    text = resources.files("mmspec.spec").joinpath("survey.json").read_text(encoding="utf-8")
    return MappingProxyType({k: SurveyEntry(**v) for k, v in json.loads(text).items()})


def unknown_id_message(survey_id: str) -> str | None:
    """Why `survey_id` is not a survey ID (with a did-you-mean and the IDs of its section), or None when it is one."""
    ids = survey()
    if survey_id in ids:
        return None
    prefix = survey_id.rpartition("-")[0]
    same = [i for i in ids if i.rpartition("-")[0] == prefix]
    known = (f"{prefix} IDs run from {same[0]} to {same[-1]}" if same
             else f"IDs start with {', '.join(dict.fromkeys(i.rpartition('-')[0] for i in ids))}")
    return (f"unknown survey ID {survey_id!r}{suggestion_text(survey_id, ids)}; {known} "
            f"(all listed in mmspec/spec/survey.json)")


def check_survey_ids(ids: Iterable[str]) -> list[tuple[int, str]]:
    """(index, message) for every item of `ids` that is not a survey ID."""
    return [(i, msg) for i, survey_id in enumerate(ids) if (msg := unknown_id_message(survey_id))]


def _known(survey_id: str) -> str:
    if msg := unknown_id_message(survey_id):
        raise PydanticCustomError("unknown-survey-id", msg)
    return survey_id


KNOWN_SURVEY_ID = AfterValidator(_known)
"""Pydantic metadata for a `str` that must be a survey ID: an error of type `unknown-survey-id` otherwise."""
