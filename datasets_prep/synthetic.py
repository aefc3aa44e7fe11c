"""SYNTHETIC fixture files in the hub schemas of the sources that have no real sample in ../shared/data.

For tests and the benchmark only: the prompts are generated from templates (every one carries the
marker "[synthetic]" in metadata columns or file names) and mean nothing. BeaverTails, Do-Not-Answer,
HoneSet and the HH-RLHF helpful-base subset get their hub columns; NYT-Dilemma, ValueLex and AdAEM get
the documented local-file columns. Generation is deterministic (no randomness, only index arithmetic).
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

SYNTHETIC_NOTE = "SYNTHETIC fixture written by datasets_prep.synthetic for tests/benchmarks; not real data"

BEAVERTAILS_KEYS = (
    "animal_abuse",
    "child_abuse",
    "controversial_topics,politics",
    "discrimination,stereotype,injustice",
    "drug_abuse,weapons,banned_substance",
    "financial_crime,property_crime,theft",
    "hate_speech,offensive_language",
    "misinformation_regarding_ethics,laws_and_safety",
    "non_violent_unethical_behavior",
    "privacy_violation",
    "self_harm",
    "sexually_explicit,adult_content",
    "terrorism,organized_crime",
    "violence,aiding_and_abetting,incitement",
)
HONESET_CATEGORIES = (
    "Latest Information with External Services",
    "User Input Not Enough Or With Wrong Information",
    "Self Identity Cognition",
    "Modality Mismatch",
    "Professional Capability in Specific Domains",
    "Interactivity Sensory Processing",
)
DNA_AREAS = (
    ("Information Hazards", "Risks from leaking or inferring sensitive information"),
    ("Malicious Uses", "Assisting illegal activities"),
    ("Discrimination, Exclusion, Toxicity, Hateful, Offensive", "Social stereotypes and unfair discrimination"),
    ("Misinformation Harms", "Disseminating false or misleading information"),
    ("Human-Chatbot Interaction Harms", "Mental Health or Overreliance Crisis"),
)
VALUELEX_GROUPS = (
    ("Self-Competent", "Competence"),
    ("User-Oriented", "Competence"),
    ("Social", "Character"),
    ("Idealistic", "Character"),
    ("Professional", "Integrity"),
    ("Ethical", "Integrity"),
)

_VERBS = ("repair", "borrow", "paint", "sell", "store", "move", "clean", "hide", "insure", "photograph", "measure", "recycle", "ship")
_OBJECTS = ("an old bicycle", "a rented flat", "a family heirloom", "a vintage camera", "a wooden canoe", "a broken laptop",
            "a neighbour's fence", "a leather sofa", "a garden shed", "a used piano", "a motorbike engine")
_PLACES = ("in a small town", "during winter", "on a tight budget", "before a long trip", "after a flood",
           "in a shared house", "at short notice", "without any tools", "for the first time", "in a foreign country")
_TOPICS = ("remote work", "city parks", "public libraries", "school uniforms", "night trains", "local markets",
           "music lessons", "street art", "volunteer fire brigades", "community gardens", "village festivals", "online classes")
_PEOPLE = ("my sister", "an old friend", "my landlord", "a coworker", "my teenage son", "a neighbour", "my business partner",
           "my grandmother", "a classmate", "my manager", "my best friend's husband")
_DILEMMAS = ("lent me money years ago and forgot about it", "asked me to keep a secret that worries me",
             "took credit for work I did", "wants me to lie on a reference", "left me a larger share of an inheritance",
             "posted photos of me without asking", "offered me a job I am not qualified for", "cheated in a charity race",
             "asked me to babysit every weekend", "found a wallet and kept the cash")
_STEM_HEADS = ("My duty", "My greatest hope", "What I value most", "The best way to help others", "A good life",
               "My biggest fear", "Real success", "What I owe my parents", "A fair society", "True friendship")
_STEM_TAILS = ("is", "for my family is", "at work is", "in my community is", "as an assistant is", "today is", "in hard times is")
_VALUES = ("Benevolence", "Conformity", "Tradition", "Security", "Universalism", "Self-direction", "Hedonism", "Stimulation",
           "Achievement", "Power")
_ERAS = ("ancient Rome", "medieval Japan", "the Renaissance", "the industrial revolution", "colonial Brazil", "Victorian England",
         "the Ming dynasty", "the early internet era", "post-war Germany", "the Ottoman empire", "the Harlem renaissance")
_PRACTICES = ("public bathing", "apprenticeship guilds", "arranged marriages", "state lotteries", "pilgrimage routes",
              "street theatre", "tea ceremonies", "coffee houses", "travelling circuses", "chess clubs", "folk music contests")


def _pick(seq: tuple[str, ...], i: int, stride: int) -> str:
    return seq[(i * stride) % len(seq)]


def _triples(n: int, a: tuple, b: tuple, c: tuple) -> list[tuple[str, str, str]]:
    """n distinct (a, b, c) combinations, spread over all three lists (a fixed permutation of the grid)."""
    total = len(a) * len(b) * len(c)
    if n > total:
        raise ValueError(f"cannot make {n} distinct synthetic prompts from {total} combinations")
    step = next(p for p in (7919, 7907, 7901, 7883) if total % p)  # a prime not dividing total: a bijection
    out = []
    for i in range(n):
        j = (i * step) % total
        out.append((a[j % len(a)], b[(j // len(a)) % len(b)], c[j // (len(a) * len(b))]))
    return out


def beavertails_rows(n_prompts: int) -> list[dict]:
    rows = []
    for i, (verb, obj, place) in enumerate(_triples(n_prompts, _VERBS, _OBJECTS, _PLACES)):
        prompt = f"What is the quickest way to {verb} {obj} {place}?"
        for r in range(1 + i % 3):  # one to three responses per prompt, as on the hub
            flagged = {BEAVERTAILS_KEYS[(i + r) % 14], BEAVERTAILS_KEYS[(3 * i) % 14]} if (i + r) % 4 else set()
            rows.append({
                "prompt": prompt,
                "response": f"[synthetic] response {r} to prompt {i}.",
                "category": {k: k in flagged for k in BEAVERTAILS_KEYS},
                "is_safe": not flagged,
            })
    return rows


def do_not_answer_rows(n: int) -> list[dict]:
    rows = []
    for i, (person, dilemma, place) in enumerate(_triples(n, _PEOPLE, _DILEMMAS, _PLACES)):
        area, harm_type = DNA_AREAS[i % len(DNA_AREAS)]
        rows.append({
            "id": i,
            "risk_area": area,
            "types_of_harm": harm_type,
            "specific_harms": f"[synthetic] harm {i % 7}",
            "question": f"Can you tell me how to get back at {person} who {dilemma} {place}?",
            "GPT4_response": "[synthetic] I can't help with that.",
        })
    return rows


def honeset_rows(n: int) -> list[dict]:
    rows = []
    for i, (topic, era, place) in enumerate(_triples(n, _TOPICS, _ERAS, _PLACES)):
        cat = HONESET_CATEGORIES[i % len(HONESET_CATEGORIES)]
        row = {"instruction": f"Please check the latest figures on {topic} compared with {era} {place} and summarise them.",
               "category": cat, "num": i + 1, "Total_num": n}
        if cat == "Professional Capability in Specific Domains":
            row["domain"] = ("Medicine", "Law", "Physics", "Finance")[i % 4]
        rows.append(row)
    return rows


def hh_helpful_rows(n: int) -> list[dict]:
    rows = []
    for i, (verb, obj, place) in enumerate(_triples(n, _VERBS, _OBJECTS, _PLACES)):
        first = f"Could you explain how people usually {verb} {obj} {place}?"
        chosen = f"\n\nHuman: {first}\n\nAssistant: [synthetic] Here is an overview."
        if i % 2:
            chosen += "\n\nHuman: Thanks, and what should I avoid?\n\nAssistant: [synthetic] A few things."
        rows.append({"chosen": chosen, "rejected": chosen.rsplit("\n\nAssistant:", 1)[0] + "\n\nAssistant: [synthetic] No idea."})
    return rows


def nyt_rows(n: int) -> list[dict]:
    rows = []
    for i, (person, dilemma, place) in enumerate(_triples(n, _PEOPLE, _DILEMMAS, _PLACES)):
        rows.append({
            "title": f"[synthetic] Dilemma {i}",
            "question": f"Years ago {person} {dilemma} {place}. I have never said anything about it. Should I raise it now?",
            "year": 2007 + i % 18,
        })
    return rows


def valuelex_rows(n: int) -> list[dict]:
    rows = []
    for i in range(min(n, len(_STEM_HEADS) * len(_STEM_TAILS))):
        group, dimension = VALUELEX_GROUPS[i % len(VALUELEX_GROUPS)]
        head, tail = _STEM_HEADS[i % len(_STEM_HEADS)], _STEM_TAILS[i // len(_STEM_HEADS)]
        rows.append({"stem": f"{head} {tail}", "category": group, "dimension": dimension})
    return rows


def adaem_rows(n: int) -> list[dict]:
    rows = []
    for i, (practice, era, topic) in enumerate(_triples(n, _PRACTICES, _ERAS, _TOPICS)):
        value = _VALUES[i % len(_VALUES)]
        rows.append({
            "question": f"Did {practice} in {era} strengthen shared values around {topic}, or mostly serve the powerful?",
            "category": value,
            "topic": "[synthetic] history",
        })
    return rows


def _write_jsonl(path: Path, rows: list[dict], *, gz: bool = False) -> None:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


DEFAULT_SIZES = {
    "beavertails": 300,
    "do_not_answer": 300,
    "honeset": 300,
    "hh_rlhf/helpful-base": 300,
    "nyt_dilemma": 300,
    "valuelex": 70,
    "adaem": 600,
}


def write_fixtures(folder: str | Path, sizes: dict[str, int] | None = None) -> dict[str, Path]:
    """Write the synthetic fixture files into `folder`; returns source name -> file path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = {**DEFAULT_SIZES, **(sizes or {})}
    (folder / "SYNTHETIC_README.txt").write_text(SYNTHETIC_NOTE + "\n", encoding="utf-8")
    paths = {
        "beavertails": folder / "synthetic_beavertails_30k_test.jsonl",
        "do_not_answer": folder / "synthetic_do_not_answer.csv",
        "honeset": folder / "synthetic_HoneSet.json",
        "hh_rlhf/helpful-base": folder / "synthetic_hh_helpful_base_test.jsonl.gz",
        "nyt_dilemma": folder / "synthetic_nyt_dilemma.csv",
        "valuelex": folder / "synthetic_valuelex_stems.csv",
        "adaem": folder / "synthetic_adaem_bench.jsonl",
    }
    _write_jsonl(paths["beavertails"], beavertails_rows(n["beavertails"]))
    _write_csv(paths["do_not_answer"], do_not_answer_rows(n["do_not_answer"]))
    paths["honeset"].write_text(json.dumps(honeset_rows(n["honeset"]), ensure_ascii=False, indent=1), encoding="utf-8")
    _write_jsonl(paths["hh_rlhf/helpful-base"], hh_helpful_rows(n["hh_rlhf/helpful-base"]), gz=True)
    _write_csv(paths["nyt_dilemma"], nyt_rows(n["nyt_dilemma"]))
    _write_csv(paths["valuelex"], valuelex_rows(n["valuelex"]))
    _write_jsonl(paths["adaem"], adaem_rows(n["adaem"]))
    return paths
