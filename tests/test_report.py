"""The HTML reports: every feature covered, names escaped, nothing fetched from outside."""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from esteira.config import MonitoringSettings
from esteira.drift import DriftReport, compare
from esteira.errors import DataError
from esteira.report import feature_anchor, render_drift_html, render_metrics_html

N = 2000
NAMES = {
    "volt_mean_24h": "numeric",
    "vibration_std_3h": "numeric",
    "<b>&amp": "numeric",
    'age "years"': "numeric",
    "model": "categorical",
    "<script>alert(1)</script>": "categorical",
}


class Page(HTMLParser):
    """Collects what the assertions need: element ids, tags inside sections, table rows."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: dict[str, list[str]] = {}  # section id -> tags inside it
        self.svg_text: dict[str, str] = {}
        self.summary_rows = 0
        self.urls: list[str] = []
        self.tags: list[str] = []
        self._section: str | None = None
        self._in_summary = self._in_body = self._in_svg = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in {"src", "href", "xlink:href", "action"}]
        if tag == "section" and a.get("id"):
            self._section = a["id"]
            self.ids[self._section] = []
            self.svg_text[self._section] = ""
        elif self._section is not None:
            self.ids[self._section].append(tag)
        if tag == "svg":
            self._in_svg = True
        if tag == "table" and a.get("class") == "summary":
            self._in_summary = True
        if tag == "tbody" and self._in_summary:
            self._in_body = True
        if tag == "tr" and self._in_body:
            self.summary_rows += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._section = None
        if tag == "svg":
            self._in_svg = False
        if tag == "table":
            self._in_summary = self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._in_svg and self._section is not None:
            self.svg_text[self._section] += data


def frames(seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {}
    for name, kind in NAMES.items():
        if kind == "numeric":
            data[name] = rng.normal(shift, 1, N)
        else:
            p = [0.25 + shift / 5, 0.25, 0.25, 0.25 - shift / 5]
            data[name] = rng.choice(["model1", "model2", "<i>model3", "model4"], N, p=p)
    return pd.DataFrame(data)


@pytest.fixture(scope="module")
def report() -> DriftReport:
    return compare(frames(1, 0.0), frames(2, 0.8), MonitoringSettings())


@pytest.fixture(scope="module")
def page(report: DriftReport) -> tuple[str, Page]:
    text = render_drift_html(report, "Fleet drift <week 12> & more")
    return text, Page(text)


def test_every_feature_has_a_section_with_a_chart(page: tuple[str, Page]) -> None:
    _, parsed = page
    for name in NAMES:
        anchor = feature_anchor(name)
        assert anchor in parsed.ids, name
        assert "svg" in parsed.ids[anchor] or "img" in parsed.ids[anchor]
        assert "rect" in parsed.ids[anchor]
        assert "reference" in parsed.svg_text[anchor]
        assert "current" in parsed.svg_text[anchor]


def test_summary_has_one_row_per_feature(page: tuple[str, Page]) -> None:
    assert page[1].summary_rows == len(NAMES)


def test_names_are_escaped(page: tuple[str, Page]) -> None:
    text, parsed = page
    assert "<script>" not in text and "script" not in parsed.tags
    assert "<b>" not in text and "b" not in parsed.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<title>Fleet drift &lt;week 12&gt; &amp; more</title>" in text


def test_no_external_urls(page: tuple[str, Page]) -> None:
    text, parsed = page
    assert all("http" not in url for url in parsed.urls)
    assert all(url.startswith("#feature-") for url in parsed.urls)
    assert "<link" not in text and "<script" not in text and "@import" not in text


def test_verdict_at_top(report: DriftReport, page: tuple[str, Page]) -> None:
    text, _ = page
    assert report.dataset_drift
    verdict = text.index('id="verdict"')
    assert verdict < text.index('class="summary"') < text.index('<section class="feature"')
    assert "Drift detected" in text and "dataset drift: yes" in text


def test_verdict_follows_significant_drift_below_the_share() -> None:
    """One strongly shifted feature among many stable ones: drift, though not dataset drift."""
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({f"f{i}": rng.normal(0, 1, 4000) for i in range(10)})
    cur = pd.DataFrame({f"f{i}": rng.normal(0, 1, 4000) for i in range(10)})
    cur["f0"] += 3.0
    result = compare(ref, cur, MonitoringSettings())
    assert result.drifted_features == ["f0"] and not result.dataset_drift
    assert result.drift_detected and result.to_dict()["drift_detected"] is True
    html = render_drift_html(result, "one feature")
    assert 'class="verdict bad"' in html and "dataset drift: no" in html


def test_fifty_features_render_fast() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({f"f{i}": rng.normal(0, 1, 5000) for i in range(45)})
    cur = ref + rng.normal(0.1, 0.1, ref.shape)
    for i in range(5):
        ref[f"c{i}"] = rng.choice([f"v{j}" for j in range(40)], 5000)
        cur[f"c{i}"] = rng.choice([f"v{j}" for j in range(42)], 5000)
    report = compare(ref, cur, MonitoringSettings())
    start = time.perf_counter()
    text = render_drift_html(report, "fifty")
    assert time.perf_counter() - start < 1.0
    assert len(Page(text).ids) == 50
    assert "(other " in text  # more than 30 categories are folded into one bar


def test_metrics_report() -> None:
    metrics = {"roc_auc": 0.91, "f1": 0.62, "<rows>": 1200, "family": "gradient_boosting"}
    roc = {"fpr": [0.0, 0.1, 0.3, 1.0], "tpr": [0.0, 0.6, 0.9, 1.0], "auc": 0.91}
    text = render_metrics_html(metrics, roc, [[900, 20], [30, 50]], "Evaluation <v3>")
    parsed = Page(text)
    assert "roc" in parsed.ids and "polyline" in parsed.ids["roc"]
    assert "&lt;rows&gt;" in text and "<rows>" not in text
    assert "AUC 0.91" in text and "predicted 1" in text
    assert all("http" not in url for url in parsed.urls)
    bare = render_metrics_html({"rmse": 1.5}, None, None, "regression")
    assert "<svg" not in bare and "1.5" in bare


def test_metrics_report_rejects_bad_roc() -> None:
    with pytest.raises(DataError, match="roc:"):
        render_metrics_html({}, {"fpr": [0.0, 1.0], "tpr": [1.0]}, None, "x")


def test_pr_curve_marks_the_chosen_point_and_counts_are_integers() -> None:
    """The chosen point's precision and recall, as drawn and tabled, are sklearn's at the cut."""
    from sklearn.metrics import precision_score, recall_score

    from esteira.config import ThresholdSettings
    from esteira.evaluation import threshold_view
    from esteira.thresholds import pr_curve

    rng = np.random.default_rng(3)
    y = (rng.random(29_100) < 0.015).astype(int)
    proba = np.clip(0.3 * y + rng.beta(1.5, 12, len(y)), 0, 1)
    t = 0.137
    view = threshold_view(y, proba, t, ThresholdSettings())
    metrics = {"roc_auc": 0.9, "pr_auc": 0.4, "rows": float(len(y)), "positives": 437.0}
    text = render_metrics_html(
        metrics,
        None,
        [[28_000, 663], [147, 290]],
        "Evaluation",
        pr=pr_curve(y, proba),
        threshold=view,
    )
    parsed = Page(text)
    assert {"polyline", "circle"} <= set(parsed.ids["pr"])
    pred = (proba >= t).astype(int)
    precision, recall = precision_score(y, pred), recall_score(y, pred)
    # the dot sits at (recall, precision) on the 300 px unit square (left 46, bottom 312)
    cx, cy = (float(v) for v in re.search(r'<circle cx="([\d.]+)" cy="([\d.]+)"', text).groups())
    assert cx == pytest.approx(46 + recall * 300, abs=0.06)
    assert cy == pytest.approx(312 - precision * 300, abs=0.06)
    assert f"precision {precision:.3f}, recall {recall:.3f}" in parsed.svg_text["pr"] + text
    assert "threshold" in parsed.ids and "(chosen)" in text
    assert "29,100" in text and "2.91e+04" not in text and "28,000" in text
    assert all("http" not in url for url in parsed.urls)
