"""Radiology-report text for SynthCXR studies, and the mentions the labels are read from.

:func:`plan_mentions` decides what a report says about each drawn finding (positive, hedged, or —
at the label-noise rate — omitted or contradicted) and which absent findings it negates or
wrongly mentions. :func:`compose_report` writes MIMIC-style free text from those mentions and
returns the mentions it actually wrote, so text-derived labels equal the text by construction and
differ from the image exactly where the truth sidecar says ``hedged`` or ``mismatched``.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import numpy as np

from g2d_bench.datasets.synthcxr.findings import CTR_THRESHOLD, Finding

#: Findings a report can talk about (foreign objects are not reported: Object-CXR has no text).
REPORTABLE = (
    "atelectasis", "cardiomegaly", "consolidation", "covid", "edema", "effusion", "emphysema",
    "enlarged_cardiomediastinum", "fibrosis", "fracture", "hernia", "infiltration", "mass", "nodule",
    "pleural_thickening", "pneumothorax", "support_devices",
)
#: Absent findings a report commonly negates, with how often (typical normal-report wording).
NEGATION_RATE = {
    "pneumothorax": 0.7, "effusion": 0.65, "consolidation": 0.65, "edema": 0.35, "cardiomegaly": 0.5,
    "nodule": 0.15, "fracture": 0.2, "enlarged_cardiomediastinum": 0.3, "atelectasis": 0.05,
}


@dataclass(frozen=True)
class Noise:
    """Report noise (stated in docs/synthcxr.md and synthcxr.json).

    - ``omit``: a drawn finding is left out of the report (half the time explicitly negated).
    - ``false_positive``: per report, one absent finding is reported as present.
    - ``false_uncertain``: per report, one absent finding is hedged ("cannot exclude").
    - hedge probability of a drawn finding = ``hedge_base + hedge_faint × (1 − severity)²``.
    - ``pneumonia_call``: a consolidation is called pneumonia in the report.
    """

    omit: float = 0.03
    false_positive: float = 0.015
    false_uncertain: float = 0.04
    hedge_base: float = 0.04
    hedge_faint: float = 0.2
    pneumonia_call: float = 0.6


@dataclass
class Mention:
    """What a report says about one finding: ``status`` 1 (present), -1 (uncertain), 0 (negated)."""

    finding: str
    status: float
    side: str = "none"
    zone: str = "diffuse"
    severity: float = 0.5
    pneumonia: bool = False
    drawn: bool = True
    index: int | None = None
    detail: list = field(default_factory=list)
    #: words chosen once per mention (location, size), so FINDINGS and IMPRESSION agree
    words: dict = field(default_factory=dict)


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _absent_mention(rng: np.random.Generator, name: str, status: float) -> Mention:
    from g2d_bench.datasets.synthcxr.population import sample_finding

    f = sample_finding(rng, name, severity=(1.2, 3.0))
    return Mention(name, status, f.side, f.zone, f.severity, drawn=False)


def plan_mentions(findings: list[Finding], rng: np.random.Generator, ctr: float,
                  noise: Noise = Noise()) -> list[Mention]:
    """What the report says about each drawn finding (``index`` = its position) and about absent ones."""
    mentions: list[Mention] = []
    drawn = {f.name for f in findings}
    for i, f in enumerate(findings):
        if f.name not in REPORTABLE:
            continue
        if rng.random() < noise.omit:
            if f.name in NEGATION_RATE and rng.random() < 0.5:
                mentions.append(Mention(f.name, 0.0, f.side, f.zone, f.severity, index=i))
            continue
        hedge = noise.hedge_base + noise.hedge_faint * (1.0 - f.severity) ** 2
        if f.name == "cardiomegaly" and ctr < CTR_THRESHOLD + 0.03:
            hedge = 0.5  # "borderline heart size"
        status = -1.0 if rng.random() < hedge else 1.0
        pneumonia = f.name == "consolidation" and rng.random() < noise.pneumonia_call
        mentions.append(Mention(f.name, status, f.side, f.zone, f.severity, pneumonia, index=i, detail=list(f.shapes)))
    absent = [n for n in REPORTABLE if n not in drawn and n != "support_devices"]
    if rng.random() < noise.false_positive:
        mentions.append(_absent_mention(rng, _pick(rng, absent), 1.0))
    if rng.random() < noise.false_uncertain:
        mentions.append(_absent_mention(rng, _pick(rng, ("consolidation", "pneumothorax", "effusion", "atelectasis",
                                                         "nodule", "edema")), -1.0))
    if "cardiomegaly" not in drawn and ctr > CTR_THRESHOLD - 0.03 and rng.random() < 0.3:
        mentions.append(Mention("cardiomegaly", -1.0, drawn=False, severity=0.0))
    said = {m.finding for m in mentions}
    for name, rate in NEGATION_RATE.items():
        if name not in drawn and name not in said and rng.random() < rate:
            mentions.append(Mention(name, 0.0, drawn=False))
    return mentions


# ------------------------------------------------------------------------------------------------
# words
# ------------------------------------------------------------------------------------------------
def _once(m: Mention, key: str, make) -> str:
    if key not in m.words:
        m.words[key] = make()
    return m.words[key]


def _size(m: Mention, rng: np.random.Generator, tiny: str = "small") -> str:
    def make() -> str:
        sev = m.severity
        if sev < 0.12:
            return _pick(rng, (tiny, "small", "trace" if tiny == "trace" else "minimal"))
        if sev < 0.4:
            return _pick(rng, ("small", "small", "mild"))
        if sev < 0.7:
            return _pick(rng, ("moderate", "moderate-sized", "medium"))
        return _pick(rng, ("large", "large", "extensive"))

    return _once(m, "size", make)


def _degree(m: Mention, rng: np.random.Generator) -> str:
    sev = m.severity
    return _once(m, "degree", lambda: _pick(rng, ("mild", "minimal", "slight")) if sev < 0.35
                 else ("moderate" if sev < 0.7 else "severe"))


def _lobe(m: Mention, rng: np.random.Generator) -> str:
    """Adjectival lobe: "right lower lobe", "bilateral upper lobe"."""
    def make() -> str:
        part = "upper" if m.zone == "upper" else "lower"
        if m.side == "bilateral":
            return f"bilateral {part} lobe"
        if m.side == "right" and part == "lower" and rng.random() < 0.2:
            return "right middle lobe"
        return f"{m.side} {part} lobe"

    return _once(m, "lobe", make)


def _in_lobe(m: Mention, rng: np.random.Generator) -> str:
    """Prepositional lobe: "in the right lower lobe", "in both lower lobes"."""
    def make() -> str:
        lobe = _lobe(m, rng)
        if m.side != "bilateral":
            return f"in the {lobe}"
        part = lobe.split()[1]
        return _pick(rng, (f"in both {part} lobes", f"in the {part} lobes bilaterally"))

    return _once(m, "in_lobe", make)


def _region(m: Mention, rng: np.random.Generator) -> str:
    def make() -> str:
        if m.side == "bilateral":
            return _pick(rng, ("bibasilar", "bilateral basilar", "bilateral lower lung")) if m.zone != "upper" else \
                _pick(rng, ("bilateral upper lung", "biapical", "bilateral upper zone"))
        if m.zone == "upper":
            return _pick(rng, (f"{m.side} upper lung", f"{m.side} apical", f"{m.side} upper zone"))
        return _pick(rng, (f"{m.side} basilar", f"{m.side} lower lung", f"{m.side} base"))

    return _once(m, "region", make)


def _a(word: str) -> str:
    """"a"/"an" + word ("an 8 mm", "an extensive", "a small")."""
    head = str(word).split("-")[0].split()[0].lower()
    vowel = head[0] in "aeiou" or head.startswith("8") or head in ("11", "18")
    return f"{'an' if vowel else 'a'} {word}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


HEDGES = ("possible", "questionable", "suspected", "equivocal")


def _opacity(m: Mention, rng: np.random.Generator, short: bool) -> str:
    loc, where = _lobe(m, rng), _in_lobe(m, rng)
    noun = _once(m, "noun", lambda: _pick(rng, ("opacity", "consolidation", "airspace opacity", "airspace consolidation")))
    plural = m.side == "bilateral"
    nouns = noun[:-1] + "ies" if plural and noun.endswith("opacity") else noun
    if m.status < 0:
        call = "pneumonia" if m.pneumonia else "consolidation"
        return _pick(rng, (f"Subtle opacity {where} may represent early {call}.",
                           f"{_cap(_pick(rng, HEDGES))} {loc} {call}.",
                           f"{call.capitalize()} {where} cannot be excluded."))
    if short:
        if m.pneumonia:
            return _pick(rng, (f"{_cap(loc)} pneumonia.", f"Findings concerning for pneumonia {where}.",
                               f"{_cap(loc)} consolidation consistent with pneumonia."))
        return f"{_cap(loc)} {nouns}."
    adj = _pick(rng, ("patchy", "focal", "dense", "confluent", "ill-defined")) if m.severity > 0.3 else \
        _pick(rng, ("small", "patchy", "faint", "mild"))
    tail = _pick(rng, (", concerning for pneumonia", ", compatible with pneumonia", " consistent with pneumonia")) \
        if m.pneumonia else ""
    return _pick(rng, (f"There {'are' if plural and nouns != noun else 'is'} {adj} {nouns} {where}{tail}.",
                       f"{_cap(adj)} {loc} {nouns}{tail}."))


def _infiltration(m: Mention, rng: np.random.Generator, short: bool) -> str:
    loc = _region(m, rng)
    s = "s" if m.side == "bilateral" else ""
    if m.status < 0:
        return _pick(rng, (f"{_cap(_pick(rng, HEDGES))} faint {loc} infiltrate{s}.",
                           f"Hazy {loc} density could reflect an infiltrate."))
    if short:
        return f"{_cap(loc)} infiltrate{s}."
    adj = _pick(rng, ("hazy", "patchy", "ill-defined", "streaky"))
    return _pick(rng, (f"{_cap(adj)} {loc} infiltrate{s}.", f"There {'are ' + adj if s else 'is ' + _a(adj)} infiltrate{s} in the {loc} "
                                                                 f"{'zones' if s else 'zone'}."))


def _covid(m: Mention, rng: np.random.Generator, short: bool) -> str:
    if m.status < 0:
        return _pick(rng, ("Faint bilateral peripheral opacities may represent early viral pneumonia.",
                           "Possible subtle peripheral ground-glass opacities, viral infection not excluded."))
    if short:
        return _pick(rng, ("Multifocal peripheral opacities compatible with viral pneumonia, including COVID-19.",
                           "Bilateral peripheral opacities concerning for COVID-19 pneumonia.",
                           "Findings consistent with atypical (viral) pneumonia."))
    return _pick(rng, (f"{_cap(_degree(m, rng))} bilateral peripheral ground-glass opacities, lower lung predominant.",
                       "Multifocal patchy peripheral opacities in both lungs, most pronounced at the bases.",
                       "Bilateral hazy peripheral opacities with a basilar predominance."))


def _effusion(m: Mention, rng: np.random.Generator, short: bool) -> str:
    bilateral = m.side == "bilateral"
    side = "bilateral" if bilateral else m.side
    s = "s" if bilateral else ""
    if m.status < 0:
        angle = "costophrenic angles" if bilateral else f"{m.side} costophrenic angle"
        return _pick(rng, (f"{_cap(_pick(rng, HEDGES))} small {side} pleural effusion{s}.",
                           f"Blunting of the {angle} could reflect a small effusion.",
                           f"A small {side} pleural effusion{s} cannot be excluded."))
    size = _size(m, rng, "trace")
    if short:
        return f"{_cap(size)} {side} pleural effusion{s}."
    if m.severity < 0.25 and not bilateral and rng.random() < 0.4:
        return f"Blunting of the {m.side} costophrenic angle is consistent with {_a(size)} pleural effusion."
    return _pick(rng, (f"There {'are ' + size if bilateral else 'is ' + _a(size)} {side} pleural effusion{s}.",
                       f"{_cap(size)} {side} pleural effusion{s}.",
                       f"{_cap(size)} {side} pleural effusion{s} {'are' if bilateral else 'is'} present."))


def _pneumothorax(m: Mention, rng: np.random.Generator, short: bool) -> str:
    side = "bilateral" if m.side == "bilateral" else m.side
    where = _once(m, "where", lambda: _pick(rng, ("apical", "apicolateral") if m.zone == "upper" else ("lateral", "basilar")))
    if m.status < 0:
        return _pick(rng, (f"{_cap(_pick(rng, HEDGES))} tiny {side} {where} pneumothorax.",
                           f"A tiny {side} {where} pneumothorax cannot be excluded.",
                           f"Thin lucency at the {side} {where} pleural surface may represent a small pneumothorax."))
    size = _size(m, rng, "tiny")
    if short:
        return f"{_cap(size)} {side} {where} pneumothorax."
    return _pick(rng, (f"There is {_a(size)} {side} {where} pneumothorax.", f"{_cap(size)} {side} {where} pneumothorax.",
                       f"{_cap(_a(size))} {side} {where} pneumothorax is seen."))


def _cardiomegaly(m: Mention, rng: np.random.Generator, short: bool) -> str:
    if m.status < 0:
        return _pick(rng, ("Heart size is borderline.", "The heart is at the upper limits of normal size.",
                           "Possible mild cardiomegaly.", "Borderline cardiomegaly."))
    deg = _degree(m, rng)
    if short:
        return _pick(rng, (f"{_cap(deg)} cardiomegaly.", "Cardiomegaly."))
    return _pick(rng, (f"{_cap(deg)} cardiomegaly.", f"The heart is {deg}ly enlarged." if deg != "slight" else "The heart is slightly enlarged.",
                       f"The cardiac silhouette is {deg}ly enlarged." if deg != "slight" else "Cardiac silhouette is mildly enlarged."))


def _mediastinum(m: Mention, rng: np.random.Generator, short: bool) -> str:
    if m.status < 0:
        return _pick(rng, ("Possible mediastinal widening, which may be due to technique.",
                           "The mediastinum may be mildly widened."))
    return _pick(rng, ("The mediastinum is widened.", "Widened superior mediastinum.",
                       "Enlarged cardiomediastinal silhouette.", "Mediastinal widening."))


def _atelectasis(m: Mention, rng: np.random.Generator, short: bool) -> str:
    loc = _region(m, rng)
    if m.status < 0:
        return _pick(rng, (f"{_cap(_pick(rng, HEDGES))} {loc} atelectasis.",
                           f"Minimal {loc} atelectasis cannot be excluded."))
    if short:
        return f"{_cap(loc)} atelectasis."
    if m.severity >= 0.65:
        return _pick(rng, (f"{_cap(_lobe(m, rng))} collapse.", f"Volume loss {_in_lobe(m, rng)} consistent with atelectasis."))
    kind = _pick(rng, ("plate-like", "linear", "subsegmental", "discoid", "minor"))
    return _pick(rng, (f"{_cap(kind)} atelectasis at the {loc.replace('basilar', 'base')}.", f"{_cap(kind)} {loc} atelectasis.",
                       f"There is {kind} atelectasis in the {loc} region."))


def _edema(m: Mention, rng: np.random.Generator, short: bool) -> str:
    deg = _degree(m, rng)
    if m.status < 0:
        return _pick(rng, ("Possible mild interstitial edema.", "Mild perihilar haziness may reflect early edema.",
                           "Pulmonary edema cannot be excluded."))
    if short:
        return f"{_cap(deg)} pulmonary edema."
    lines = " with Kerley B lines" if m.severity > 0.35 and rng.random() < 0.5 else ""
    return _pick(rng, (f"{_cap(deg)} pulmonary edema{lines}.", f"{_cap(deg)} interstitial edema{lines}.",
                       f"Perihilar haziness consistent with {deg} pulmonary edema."))


def _nodule(m: Mention, rng: np.random.Generator, short: bool) -> str:
    loc, where = _lobe(m, rng), _in_lobe(m, rng)
    mm = int(round(6 + 20 * m.severity))
    if m.status < 0:
        return _pick(rng, (f"{_cap(_pick(rng, HEDGES))} nodule {where}, which may represent a nipple shadow.",
                           f"Small nodular density projecting over the {loc} could represent a nodule."))
    if short:
        return _pick(rng, (f"{mm} mm {loc} nodule; CT recommended.", f"{_cap(loc)} pulmonary nodule."))
    return _pick(rng, (f"{_cap(_a(mm))} mm nodule is seen {where}.", f"{mm}-mm nodular opacity {where}.",
                       f"There is {_a(mm)} mm pulmonary nodule projecting over the {loc}."))


def _mass(m: Mention, rng: np.random.Generator, short: bool) -> str:
    loc, where = _lobe(m, rng), _in_lobe(m, rng)
    cm = round(3.5 + 4.0 * m.severity, 1)
    if m.status < 0:
        return f"Ill-defined density {where} could represent a mass."
    if short:
        return _pick(rng, (f"{_cap(loc)} mass, concerning for malignancy.", f"{cm} cm {loc} mass."))
    return _pick(rng, (f"{_cap(_a(cm))} cm {_pick(rng, ('lobulated', 'rounded', 'irregular'))} mass {where}.",
                       f"There is {_a(cm)} cm mass {where}."))


def _emphysema(m: Mention, rng: np.random.Generator, short: bool) -> str:
    if m.status < 0:
        return "Hyperinflated lungs may reflect emphysema."
    if short:
        return "Emphysema."
    bullae = " with apical bullae" if m.severity > 0.5 else ""
    return _pick(rng, (f"The lungs are hyperinflated with emphysematous changes{bullae}.",
                       f"Upper lobe predominant emphysema{bullae}.", f"Changes of emphysema{bullae}."))


def _fibrosis(m: Mention, rng: np.random.Generator, short: bool) -> str:
    if m.status < 0:
        return "Coarse interstitial markings at the bases, possibly fibrosis."
    if short:
        return "Pulmonary fibrosis."
    return _pick(rng, ("Bibasilar reticular opacities consistent with pulmonary fibrosis.",
                       "Chronic fibrotic changes at the lung bases.", "Peripheral basilar interstitial fibrosis."))


def _pleural_thickening(m: Mention, rng: np.random.Generator, short: bool) -> str:
    side = "bilateral" if m.side == "bilateral" else m.side
    where = "apical pleural thickening" if m.zone == "upper" else "pleural thickening along the lateral chest wall"
    if m.status < 0:
        return f"Possible {side} {where}."
    return f"{_cap(side)} {where}."


def _hernia(m: Mention, rng: np.random.Generator, short: bool) -> str:
    if m.status < 0:
        return "Retrocardiac density may represent a hiatal hernia."
    return _pick(rng, (f"{_cap(_size(m, rng))} hiatal hernia.",
                       "Retrocardiac air-fluid level consistent with a hiatal hernia."))


def _fracture(m: Mention, rng: np.random.Generator, short: bool) -> str:
    side = m.side if m.side in ("left", "right") else "right"
    if m.status < 0:
        return f"Possible {side} posterior rib fracture; correlate with point tenderness."
    if short:
        return f"{_cap(side)} rib fracture."
    kind = _pick(rng, ("acute", "nondisplaced", "minimally displaced"))
    return _pick(rng, (f"There is {_a(kind)} fracture of a {side} posterior rib.",
                       f"{_cap(kind)} {side} posterior rib fracture."))


_DEVICE_TEXT = {
    "ett": ("Endotracheal tube terminates {n} cm above the carina.", "ET tube in standard position."),
    "ng": ("Nasogastric tube courses below the diaphragm.", "Enteric tube tip in the stomach."),
    "cvc": ("Central venous catheter tip in the SVC.", "Right internal jugular line terminates at the cavoatrial junction."),
    "pacemaker": ("Left-sided pacemaker with leads in the right heart.", "Cardiac pacing device in place."),
    "chest_tube": ("Chest tube in place.", "Pleural drain in the lower hemithorax."),
    "ecg": ("Monitoring leads overlie the chest.", "ECG leads project over the chest."),
}


def _devices(m: Mention, rng: np.random.Generator, short: bool) -> str:
    if short:
        return _pick(rng, ("Lines and tubes as described.", "Support devices in standard position."))
    kinds = m.detail or ["ecg"]
    return " ".join(_pick(rng, _DEVICE_TEXT[k]).format(n=int(rng.integers(2, 7))) for k in kinds)


PHRASES = {
    "consolidation": _opacity, "infiltration": _infiltration, "covid": _covid, "effusion": _effusion,
    "pneumothorax": _pneumothorax, "cardiomegaly": _cardiomegaly, "enlarged_cardiomediastinum": _mediastinum,
    "atelectasis": _atelectasis, "edema": _edema, "nodule": _nodule, "mass": _mass, "emphysema": _emphysema,
    "fibrosis": _fibrosis, "pleural_thickening": _pleural_thickening, "hernia": _hernia, "fracture": _fracture,
    "support_devices": _devices,
}

NEGATIONS = {
    "pneumothorax": ("No pneumothorax.", "There is no pneumothorax.", "No evidence of pneumothorax."),
    "effusion": ("No pleural effusion.", "There is no pleural effusion.", "No pleural effusions are seen."),
    "consolidation": ("No focal consolidation.", "There is no focal consolidation.", "No focal airspace consolidation is seen."),
    "edema": ("No pulmonary edema.", "There is no evidence of pulmonary edema.", "No signs of pulmonary edema."),
    "cardiomegaly": ("Heart size is normal.", "The heart is normal in size.", "Normal heart size.",
                     "The cardiac silhouette is within normal limits."),
    "nodule": ("No suspicious pulmonary nodules.", "No pulmonary nodules or masses are identified."),
    "fracture": ("No acute osseous abnormality.", "No displaced rib fractures.", "No acute fracture is identified."),
    "enlarged_cardiomediastinum": ("The mediastinal contours are normal.", "Mediastinal contours are unremarkable.",
                                   "Normal mediastinal contours."),
    "atelectasis": ("No atelectasis.", "There is no atelectasis."),
}
#: Several negations in one sentence (the commonest normal-report sentence of all).
COMBINED_NEGATIONS = (
    (("consolidation", "effusion", "pneumothorax"), ("There is no focal consolidation, pleural effusion or pneumothorax.",
                                                     "No focal consolidation, pleural effusion, or pneumothorax is seen.",
                                                     "No consolidation, effusion, or pneumothorax.")),
    (("effusion", "pneumothorax"), ("No pleural effusion or pneumothorax.", "There is no effusion or pneumothorax.")),
    (("cardiomegaly", "enlarged_cardiomediastinum"), ("The cardiomediastinal silhouette is normal.",
                                                      "Heart size and mediastinal contours are normal.",
                                                      "Cardiac and mediastinal silhouettes are unremarkable.")),
)
#: Findings whose presence makes "the lungs are clear" false.
PARENCHYMAL = ("consolidation", "infiltration", "covid", "edema", "atelectasis", "nodule", "mass", "emphysema",
               "fibrosis", "pneumothorax", "effusion")
CLEAR_LUNGS = ("The lungs are clear.", "Lungs are clear bilaterally.", "The lungs are well expanded and clear.",
               "Clear lungs.", "Both lungs are clear.", "The lungs are clear without focal abnormality.")
#: Sentences with no label meaning, each allowed unless the listed finding was mentioned.
FILLERS = (
    ("Hilar contours are normal.", "enlarged_cardiomediastinum"), ("The trachea is midline.", None),
    ("Pulmonary vascularity is normal.", "edema"), ("No free air below the diaphragm.", None),
    ("The visualized upper abdomen is unremarkable.", "hernia"), ("Soft tissues are unremarkable.", None),
    ("Osseous structures are grossly intact.", "fracture"), ("Lung volumes are normal.", "emphysema"),
    ("Degenerative changes of the thoracic spine.", None),
    ("Surgical clips in the upper abdomen.", None), ("The aorta is mildly tortuous.", None),
    ("Thoracic aorta is calcified.", None),
)
NORMAL_IMPRESSIONS = (
    "No acute cardiopulmonary process.", "No acute intrathoracic process.", "No acute cardiopulmonary abnormality.",
    "Normal chest radiograph.", "No radiographic evidence of acute disease.", "Unremarkable chest radiograph.",
    "No acute findings.", "No acute cardiopulmonary findings.", "No evidence of acute disease in the chest.",
    "Normal chest x-ray.", "No significant interval change. No acute process.", "Stable chest radiograph without acute findings.",
)
OPENINGS = {
    "PA": ("PA and lateral views of the chest provided.", "PA and lateral chest radiographs were obtained.",
           "Frontal and lateral views of the chest.", ""),
    "AP": ("Portable AP upright view of the chest.", "Single frontal view of the chest.",
           "Portable semi-erect chest radiograph.", "AP portable view of the chest was obtained.", ""),
}
INDICATIONS = ("cough", "fever", "shortness of breath", "chest pain", "hypoxia", "weakness", "dyspnea on exertion",
               "pre-operative evaluation", "fall", "line placement", "sepsis")
QUESTIONS = ("pneumonia", "pneumothorax", "effusion", "infiltrate", "acute process", "interval change", "edema")
ORDER = ("support_devices", "consolidation", "infiltration", "covid", "atelectasis", "nodule", "mass", "edema",
         "emphysema", "fibrosis", "effusion", "pneumothorax", "pleural_thickening", "cardiomegaly",
         "enlarged_cardiomediastinum", "hernia", "fracture")
#: Share of reports with both sections / FINDINGS only / IMPRESSION only / neither (MIMIC-CXR has
#: reports of every kind; studies with neither are dropped by the loader, G2D §4 / MGCA).
SECTION_MODES = (("both", 0.8), ("findings", 0.08), ("impression", 0.11), ("neither", 0.01))


def _negation_sentences(negated: list[Mention], rng: np.random.Generator) -> list[tuple[str, list[Mention]]]:
    left = {m.finding: m for m in negated}
    out = []
    for group, texts in COMBINED_NEGATIONS:
        if all(g in left for g in group) and rng.random() < 0.6:
            out.append((_pick(rng, texts), [left.pop(g) for g in group]))
    out += [(_pick(rng, NEGATIONS[name]), [m]) for name, m in left.items()]
    return out


def _filler(said: set[str], rng: np.random.Generator, count: int) -> list[str]:
    options = [text for text, blocker in FILLERS if blocker is None or blocker not in said]
    picks = rng.permutation(len(options))[:count]
    out = [options[i] for i in sorted(picks)]
    if not said & set(PARENCHYMAL) and rng.random() < 0.7:
        out.insert(0, _pick(rng, CLEAR_LUNGS))
    return out


def _findings_section(positives: list[Mention], negated: list[Mention], view: str,
                      rng: np.random.Generator) -> tuple[list[str], list[Mention]]:
    """Sentences of FINDINGS and the mentions they carry."""
    said = {m.finding for m in positives}
    sentences = [PHRASES[m.finding](m, rng, False) for m in positives]
    negations = _negation_sentences(negated, rng)
    opening = _pick(rng, OPENINGS.get(view, OPENINGS["PA"])) if rng.random() < 0.3 else ""
    body = sentences + [t for t, _ in negations]
    fillers = _filler(said, rng, int(rng.integers(0, 3)))
    if not positives:
        body = fillers[:1] + body + fillers[1:]
    else:
        body = body + fillers
    carried = positives + [m for _, ms in negations for m in ms]
    return ([opening] if opening else []) + body, carried


def _impression_section(positives: list[Mention], negated: list[Mention], everything: bool,
                        rng: np.random.Generator) -> tuple[list[str], list[Mention]]:
    """Sentences of IMPRESSION: all or the main positive/uncertain mentions (numbered when many)."""
    if not positives:
        text = [_pick(rng, NORMAL_IMPRESSIONS)]
        carried: list[Mention] = []
        if negated and rng.random() < 0.3:
            extra = negated[int(rng.integers(len(negated)))]
            text.append(_pick(rng, NEGATIONS[extra.finding]))
            carried.append(extra)
        return text, carried
    ranked = sorted(positives, key=lambda m: -m.severity)
    chosen = ranked if everything else ranked[: int(rng.integers(1, 4))]
    chosen = sorted(chosen, key=lambda m: ORDER.index(m.finding))
    text = [PHRASES[m.finding](m, rng, True) for m in chosen]
    if len(text) > 1 and rng.random() < 0.5:
        text = [f"{i + 1}. {t}" for i, t in enumerate(text)]
    elif rng.random() < 0.25 and not any(m.finding in PARENCHYMAL for m in positives):
        text.append("Otherwise, no acute cardiopulmonary process.")
    return text, chosen


def _section(name: str, sentences: list[str]) -> str:
    body = textwrap.fill(" ".join(sentences), width=77, initial_indent=" ", subsequent_indent=" ")
    return f" {name}:\n \n{body}\n"


def compose_report(mentions: list[Mention], rng: np.random.Generator, *, view: str, female: bool,
                   age: int) -> tuple[str, list[Mention]]:
    """MIMIC-CXR-style report text and the mentions it actually contains (labels come from these)."""
    positives = sorted([m for m in mentions if m.status != 0.0], key=lambda m: ORDER.index(m.finding))
    negated = [m for m in mentions if m.status == 0.0]
    modes = [m for m, _ in SECTION_MODES]
    mode = modes[int(rng.choice(len(modes), p=[p for _, p in SECTION_MODES]))]
    findings, f_carried = _findings_section(positives, negated, view, rng)
    impression, i_carried = _impression_section(positives, negated if mode == "impression" else [],
                                                mode == "impression", rng)
    parts = [" " * 33 + "FINAL REPORT\n"]
    if rng.random() < 0.5:
        exam = "CHEST (PA AND LAT)" if view == "PA" else "CHEST (PORTABLE AP)"
        parts.append(f" EXAMINATION:  {exam}\n")
    if rng.random() < 0.6:
        who = "woman" if female else "man"
        parts.append(f" INDICATION:  ___-year-old {who} with {_pick(rng, INDICATIONS)}.  // eval for {_pick(rng, QUESTIONS)}\n")
    if rng.random() < 0.5:
        parts.append(f" COMPARISON:  {_pick(rng, ('None.', 'Chest radiograph from ___.', '___'))}\n")
    if mode in ("both", "findings"):
        parts.append(_section("FINDINGS", findings))
    if mode in ("both", "impression"):
        parts.append(_section("IMPRESSION", impression))
    if mode == "neither":
        parts.append(textwrap.fill(" ".join(findings), width=77, initial_indent=" ", subsequent_indent=" ") + "\n")
    carried = {"both": f_carried + i_carried, "findings": f_carried, "impression": i_carried,
               "neither": f_carried}[mode]
    unique = list({id(m): m for m in carried}.values())
    return " \n".join(parts), unique
