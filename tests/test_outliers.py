"""Outlier detectors (MLlib stages), policies and the detect_outliers job.

Expected statistics come from numpy/scipy on the same values. Quantiles: for at most
``sampleRows`` values (100,000) they are the exact order statistics of every value, quantile p
at rank ``ceil(p * n)``: ``np.quantile(method="inverted_cdf")``, which is what the tests compare
with. Medians are taken on an odd number of values, where every definition agrees (so ``np.median`` and ``scipy.stats.median_abs_deviation`` apply).
"""

from __future__ import annotations

import json
import math
import shutil
from datetime import datetime, timezone
from decimal import Decimal

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import functions as F
from pyspark.sql import types as T
from scipy.spatial.distance import mahalanobis
from scipy.stats import median_abs_deviation

from ml_engine.config import ConfigError, DetectorConfig, build_config
from ml_engine.features import run_build_features
from ml_engine.jobs import run_job
from ml_engine.outliers import (
    IS_OUTLIER,
    OUTLIER_FIELDS,
    OUTLIER_REASONS,
    OUTLIER_SCORE,
    OUTLIER_STATS_SCHEMA,
    IQROutlierDetector,
    IQROutlierModel,
    MADOutlierDetector,
    MADOutlierModel,
    MahalanobisOutlierDetector,
    MahalanobisOutlierModel,
    OutlierFitError,
    ZScoreOutlierDetector,
    ZScoreOutlierModel,
    build_outlier_pipeline,
    fit_detectors,
    outlier_statistics,
    run_detect_outliers,
    split_outliers,
    with_capped_values,
    with_outlier_flags,
)
from ml_engine.quality.quarantine import QUARANTINE_SCHEMA
from ml_engine.results import JobError
from ml_engine.session import JobCounter
from ml_engine.tables import open_tables

# ---------------------------------------------------------------------------------- data

# a: 11 values + a null + a NaN (not scored); b: 13 integers; c: constant.
A = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 60.0, -40.0, None, float("nan")]
B = [10, 11, 12, 12, 13, 13, 13, 14, 14, 15, 16, 100, 0]
UNI_SCHEMA = "id long, a double, b int, c double"
SCORE_SCHEMA = T.StructType(
    [
        T.StructField("id", T.LongType()),
        T.StructField("flag", T.BooleanType()),
        T.StructField("score", T.DoubleType()),
        T.StructField("reasons", T.ArrayType(T.StringType())),
    ]
)

# 14 correlated rows and one that breaks the correlation of x and y.
MAHA = [
    [0.0, 3.0, -1.8],
    [-8.9, -9.0, -11.3],
    [0.6, 13.7, -0.9],
    [-6.2, 1.8, 5.0],
    [1.1, -8.8, -3.1],
    [7.0, -10.0, -8.6],
    [-19.0, -22.4, -22.3],
    [-2.4, -13.8, -1.1],
    [1.6, -1.1, -25.7],
    [-5.4, -3.2, 1.0],
    [-15.3, -12.4, -11.2],
    [-8.1, 6.6, -4.9],
    [-0.3, 8.7, -3.2],
    [-1.1, 0.5, 1.0],
    [25.0, -20.0, 3.0],
]
# The two largest distances are 2.95 and 3.07, the next 2.55: 2.75 separates them clearly.
MAHA_THRESHOLD = 2.75


@pytest.fixture(scope="module")
def uni(spark):
    rows = [(i, a, b, 5.0) for i, (a, b) in enumerate(zip(A, B, strict=True))]
    return spark.createDataFrame(rows, UNI_SCHEMA)


@pytest.fixture(scope="module")
def maha(spark):
    return spark.createDataFrame(
        [(i, *r) for i, r in enumerate(MAHA)], "id long, x double, y double, w double"
    )


def values(col: list) -> np.ndarray:
    """The values a detector scores: no nulls, no NaN."""
    return np.array([v for v in col if v is not None and not math.isnan(v)], dtype=float)


def scored(df, model):
    """The model's three output columns under fixed names, for comparison."""
    return model.transform(df).select(
        "id",
        F.col(model.getOutputCol()).alias("flag"),
        F.col(model.getScoreCol()).alias("score"),
        F.col(model.getReasonsCol()).alias("reasons"),
    )


def expected_univariate(spark, method, columns, centre_and_scale):
    """Rows (id, flag, score, reasons) from per-column (a, b, s): fences a - s and b + s,
    score max(a - x, x - b, 0) / s, s == 0 -> score 0 and never flagged."""
    data = {"a": A, "b": [float(v) for v in B], "c": [5.0] * len(A)}
    rows = []
    for i in range(len(A)):
        scores, reasons = [], []
        for c in columns:
            x = data[c][i]
            if x is None or math.isnan(x):
                continue
            a, b, s = (float(v) for v in centre_and_scale[c])
            if s == 0:
                scores.append(0.0)
                continue
            scores.append(max(a - x, x - b, 0.0) / s)
            if x < a - s or x > b + s:
                reasons.append(f"{method}:{c}")
        rows.append((i, bool(reasons), max(scores) if scores else None, reasons))
    return spark.createDataFrame(rows, SCORE_SCHEMA)


# ---------------------------------------------------------------------------------- IQR


def test_iqr_quartiles_match_numpy(uni):
    model = IQROutlierDetector(inputCols=["a", "b", "c"]).fit(uni)
    expected = [np.quantile(values(v), [0.25, 0.75], method="inverted_cdf") for v in (A, B, [5.0])]
    assert model.getQ1s() == [q[0] for q in expected]
    assert model.getQ3s() == [q[1] for q in expected]
    # Tukey fences with k = 1.5; the constant column has none. By hand: a's 11 values have
    # quartiles at ranks ceil(11 / 4) = 3 and ceil(33 / 4) = 9 of the sorted values, 2 and 8;
    # b's 13 at ranks 4 and 10, 12 and 14.
    assert model.fences() == {"a": (2.0 - 9.0, 8.0 + 9.0), "b": (12.0 - 3.0, 14.0 + 3.0)}


def test_iqr_flags_scores_and_reasons_row_by_row(spark, uni):
    model = IQROutlierDetector(inputCols=["a", "b", "c"], k=1.5).fit(uni)
    cs = {}
    for c, v in (("a", A), ("b", B), ("c", [5.0])):
        q1, q3 = np.quantile(values(v), [0.25, 0.75], method="inverted_cdf")
        cs[c] = (q1, q3, 1.5 * (q3 - q1))
    expected = expected_univariate(spark, "iqr", ["a", "b", "c"], cs)
    assert_approx_df_equality(
        scored(uni, model), expected, 1e-12, ignore_nullable=True, ignore_row_order=True
    )
    # Spot check by hand: a = 60 is (60 - 8) / 9 beyond Q3; b = 0 is (12 - 0) / 3 below Q1.
    rows = {r.id: r for r in scored(uni, model).collect()}
    assert rows[9].score == pytest.approx(52.0 / 9.0) and rows[9].reasons == ["iqr:a"]
    assert rows[12].score == pytest.approx(4.0) and rows[12].reasons == ["iqr:b"]


def test_iqr_k_of_a_fitted_model_moves_the_fences(uni):
    model = IQROutlierDetector(inputCols=["b"], k=1.5).fit(uni).setK(30.0)
    assert model.fences() == {"b": (12.0 - 60.0, 14.0 + 60.0)}
    flagged = scored(uni, model).where("flag").select("id")
    assert sorted(r.id for r in flagged.collect()) == [11]


# ---------------------------------------------------------------------------------- MAD


def test_mad_medians_and_mads_match_numpy_and_scipy(uni):
    model = MADOutlierDetector(inputCols=["a", "b", "c"]).fit(uni)
    assert model.getMedians() == [np.median(values(v)) for v in (A, B, [5.0])]
    assert model.getMads() == [median_abs_deviation(values(v)) for v in (A, B, [5.0])]


def test_mad_robust_z_scores_row_by_row(spark, uni):
    model = MADOutlierDetector(inputCols=["a", "b", "c"], threshold=3.5).fit(uni)
    cs = {}
    for c, v in (("a", A), ("b", B), ("c", [5.0])):
        med, mad = np.median(values(v)), median_abs_deviation(values(v))
        # |0.6745 (x - med) / mad| > 3.5  <=>  |x - med| > 3.5 mad / 0.6745
        cs[c] = (med, med, 3.5 * mad / 0.6745)
    expected = expected_univariate(spark, "mad", ["a", "b", "c"], cs)
    assert_approx_df_equality(
        scored(uni, model), expected, 1e-12, ignore_nullable=True, ignore_row_order=True
    )
    # The score is |robust z| / threshold: for a = 60, 0.6745 * 55 / 3 / 3.5.
    row = scored(uni, model).where("id = 9").first()
    assert row.score == pytest.approx(0.6745 * 55 / 3 / 3.5)


# ---------------------------------------------------------------------------------- z-score


def test_zscore_means_and_sample_stds_match_numpy(uni):
    model = ZScoreOutlierDetector(inputCols=["a", "b", "c"]).fit(uni)
    assert model.getMeans() == pytest.approx([values(v).mean() for v in (A, B, [5.0] * 13)])
    assert model.getStds() == pytest.approx(
        [values(v).std(ddof=1) for v in (A, B, [5.0] * 13)], abs=1e-12
    )


def test_zscore_scores_row_by_row(spark, uni):
    # |z| of a: 60 -> 2.39, -40 -> 2.03; of b: 100 -> 3.29. Threshold 2.2 flags 60 and 100.
    model = ZScoreOutlierDetector(inputCols=["a", "b", "c"], threshold=2.2).fit(uni)
    cs = {}
    for c, v in (("a", A), ("b", B), ("c", [5.0] * 13)):
        m, s = values(v).mean(), values(v).std(ddof=1)
        cs[c] = (m, m, 2.2 * s)
    expected = expected_univariate(spark, "zscore", ["a", "b", "c"], cs)
    assert_approx_df_equality(
        scored(uni, model), expected, 1e-9, ignore_nullable=True, ignore_row_order=True
    )
    assert sorted(r.id for r in scored(uni, model).where("flag").collect()) == [9, 11]


@pytest.mark.parametrize(
    "detector", [IQROutlierDetector, MADOutlierDetector, ZScoreOutlierDetector]
)
def test_null_and_nan_values_are_not_scored(spark, uni, detector):
    model = detector(inputCols=["a"]).fit(uni)
    out = scored(uni, model).where("id IN (11, 12)")  # a is null, NaN
    expected = spark.createDataFrame([(11, False, None, []), (12, False, None, [])], SCORE_SCHEMA)
    assert_df_equality(out, expected, ignore_nullable=True, ignore_row_order=True)


# ---------------------------------------------------------------------------------- Mahalanobis


def test_mahalanobis_distances_match_scipy(spark, maha):
    model = MahalanobisOutlierDetector(inputCols=["x", "y", "w"], threshold=MAHA_THRESHOLD).fit(
        maha
    )
    X = np.array(MAHA)
    vi = np.linalg.inv(np.cov(X, rowvar=False))
    d = [mahalanobis(r, X.mean(axis=0), vi) for r in X]
    expected = spark.createDataFrame(
        [
            (
                i,
                bool(di > MAHA_THRESHOLD),
                float(di / MAHA_THRESHOLD),
                ["mahalanobis:x,y,w"] if di > MAHA_THRESHOLD else [],
            )
            for i, di in enumerate(d)
        ],
        SCORE_SCHEMA,
    )
    assert_approx_df_equality(
        scored(maha, model), expected, 1e-9, ignore_nullable=True, ignore_row_order=True
    )
    assert sorted(i for i, di in enumerate(d) if di > MAHA_THRESHOLD) == [8, 14]
    assert model.getMeans() == pytest.approx(X.mean(axis=0).tolist())
    assert model.getStds() == pytest.approx(X.std(axis=0, ddof=1).tolist())
    assert np.allclose(np.array(model.getInvCorrelation()), np.linalg.inv(np.corrcoef(X.T)))


def test_mahalanobis_leaves_a_constant_column_out(spark, maha):
    with_const = maha.withColumn("k", F.lit(7.0))
    model = MahalanobisOutlierDetector(inputCols=["x", "k", "y"], threshold=2.0).fit(with_const)
    X = np.array(MAHA)[:, :2]
    vi = np.linalg.inv(np.cov(X, rowvar=False))
    d = [mahalanobis(r, X.mean(axis=0), vi) for r in X]
    got = {r.id: r.score for r in scored(with_const, model).collect()}
    assert [got[i] for i in range(len(MAHA))] == pytest.approx([di / 2.0 for di in d])
    assert model.getStds()[1] == 0.0


def test_mahalanobis_row_with_a_null_is_not_scored(spark, maha):
    model = MahalanobisOutlierDetector(inputCols=["x", "y"]).fit(maha)
    df = spark.createDataFrame([(0, None, 1.0), (1, 0.0, 0.0)], "id long, x double, y double")
    out = {r.id: (r.flag, r.score) for r in scored(df, model).collect()}
    assert out[0] == (False, None)
    assert out[1][1] is not None


def test_statistics_count_every_check_with_a_multivariate_and_a_repeated_check(spark, maha):
    # Two IQR detectors check x (k 1.0 and 0.5) next to a Mahalanobis detector: every check's
    # counts, and the rows on which any fired, from numpy and scipy.
    stages = [
        IQROutlierDetector(inputCols=["x", "y"], k=1.0),
        IQROutlierDetector(inputCols=["x"], k=0.5),
        MahalanobisOutlierDetector(inputCols=["x", "y", "w"], threshold=MAHA_THRESHOLD),
    ]
    model = Pipeline(stages=stages).fit(maha)
    X = np.array(MAHA)

    def iqr_fired(j, k):
        q1, q3 = np.quantile(X[:, j], [0.25, 0.75], method="inverted_cdf")
        return (X[:, j] < q1 - k * (q3 - q1)) | (X[:, j] > q3 + k * (q3 - q1))

    vi = np.linalg.inv(np.cov(X, rowvar=False))
    maha_fired = np.array([mahalanobis(r, X.mean(axis=0), vi) > MAHA_THRESHOLD for r in X])
    fired = {(0, "x"): iqr_fired(0, 1.0), (0, "y"): iqr_fired(1, 1.0), (1, "x"): iqr_fired(0, 0.5)}
    fired[(2, "x,y,w")] = maha_fired
    rows, n_rows, n_outliers = outlier_statistics(maha, model, "b1", "flag")
    got = {(r["detector"], r["column"]): (r["rows_scored"], r["rows_flagged"]) for r in rows}
    assert got == {key: (len(X), int(f.sum())) for key, f in fired.items()}
    assert (n_rows, n_outliers) == (len(X), int(np.logical_or.reduce(list(fired.values())).sum()))
    assert int(fired[(1, "x")].sum()) > int(fired[(0, "x")].sum())  # the two x checks differ


# ---------------------------------------------------------------------------------- degenerate


@pytest.mark.parametrize(
    "detector",
    [IQROutlierDetector, MADOutlierDetector, ZScoreOutlierDetector, MahalanobisOutlierDetector],
)
def test_constant_column_is_never_an_outlier(spark, detector):
    # MAD = IQR = std = 0: no fence distance exists; documented as score 0, never flagged.
    df = spark.createDataFrame([(i, 5.0) for i in range(9)], "id long, c double")
    model = detector(inputCols=["c"]).fit(df)
    probe = spark.createDataFrame([(0, 5.0), (1, 1e9), (2, None)], "id long, c double")
    expected = spark.createDataFrame(
        [(0, False, 0.0, []), (1, False, 0.0, []), (2, False, None, [])], SCORE_SCHEMA
    )
    assert_df_equality(scored(probe, model), expected, ignore_nullable=True, ignore_row_order=True)


def test_fit_on_a_column_without_values_names_it(spark):
    df = spark.createDataFrame([(1.0, None), (2.0, None)], "a double, empty double")
    with pytest.raises(
        OutlierFitError, match=r"IQROutlierDetector: column\(s\) \['empty'\] have no"
    ):
        IQROutlierDetector(inputCols=["a", "empty"]).fit(df)


def test_fit_rejects_missing_and_non_numeric_columns(spark, uni):
    with pytest.raises(ValueError, match="MADOutlierDetector: input column 'nope' is not in"):
        MADOutlierDetector(inputCols=["a", "nope"]).fit(uni)
    text = uni.withColumn("s", F.lit("x"))
    with pytest.raises(ValueError, match="input column 's' has type string; outlier detectors"):
        ZScoreOutlierDetector(inputCols=["s"]).fit(text)


# ---------------------------------------------------------------------------------- stages


def test_stages_construct_without_arguments_with_spark_defaults():
    det = IQROutlierDetector()
    assert det.getK() == 1.5 and det.getSampleRows() == 100_000
    assert det.getOutputCol() == det.uid + "__output"
    assert det.getScoreCol() == det.uid + "__score"
    assert MADOutlierDetector().getThreshold() == 3.5
    for cls in (IQROutlierModel, MADOutlierModel, ZScoreOutlierModel, MahalanobisOutlierModel):
        model = cls()
        assert not model.isDefined(model.inputCols)
    with pytest.raises(TypeError):
        IQROutlierDetector(["a"])  # keyword-only, like Spark's own stages


ESTIMATORS = [
    (IQROutlierDetector, {"k": 2.0}, "uni", ["a", "b", "c"]),
    (MADOutlierDetector, {"threshold": 3.0}, "uni", ["a", "b", "c"]),
    (ZScoreOutlierDetector, {"threshold": 2.2}, "uni", ["a", "b", "c"]),
    (MahalanobisOutlierDetector, {"threshold": 2.75}, "maha", ["x", "y", "w"]),
]


@pytest.mark.parametrize(("detector", "params", "data", "cols"), ESTIMATORS)
def test_save_load_round_trip_gives_identical_output(
    request, tmp_path, detector, params, data, cols
):
    df = request.getfixturevalue(data)
    est = detector(inputCols=cols, **params)
    est.write().overwrite().save(str(tmp_path / "est"))
    loaded_est = detector.load(str(tmp_path / "est"))
    assert {p.name: v for p, v in loaded_est.extractParamMap().items()} == {
        p.name: v for p, v in est.extractParamMap().items()
    }
    model = est.fit(df)
    model.write().overwrite().save(str(tmp_path / "model"))
    loaded = type(model).load(str(tmp_path / "model"))
    assert loaded.uid == model.uid
    assert_df_equality(
        loaded.transform(df), model.transform(df), ignore_row_order=True, allow_nan_equality=True
    )


def test_pipeline_model_round_trip_gives_identical_output(tmp_path, uni):
    pipeline = Pipeline(
        stages=[
            IQROutlierDetector(inputCols=["a", "b"], k=3.0),
            MADOutlierDetector(inputCols=["a"]),
            ZScoreOutlierDetector(inputCols=["b"]),
            MahalanobisOutlierDetector(inputCols=["a", "b"]),
        ]
    )
    model = pipeline.fit(uni)
    model.write().overwrite().save(str(tmp_path / "p"))
    loaded = PipelineModel.load(str(tmp_path / "p"))
    assert [type(s) for s in loaded.stages] == [type(s) for s in model.stages]
    assert_df_equality(
        loaded.transform(uni), model.transform(uni), ignore_row_order=True, allow_nan_equality=True
    )


def test_saved_stages_name_their_class_by_the_public_path_and_load(tmp_path, uni):
    """Saved stages name their class ``ml_engine.outliers.<name>`` whichever module defines it,
    so detectors saved by any version of the package load (the metadata is what loads them)."""
    pipeline = Pipeline(
        stages=[
            IQROutlierDetector(inputCols=["a", "b"]),
            MADOutlierDetector(inputCols=["a"]),
            ZScoreOutlierDetector(inputCols=["b"]),
            MahalanobisOutlierDetector(inputCols=["a", "b"]),
        ]
    )
    model = pipeline.fit(uni)
    pipeline.write().overwrite().save(str(tmp_path / "pipeline"))
    model.write().overwrite().save(str(tmp_path / "model"))
    for name, stages in (("pipeline", pipeline.getStages()), ("model", model.stages)):
        metadata = sorted((tmp_path / name).glob("stages/*/metadata/part-*"))
        assert [json.loads(m.read_text())["class"] for m in metadata] == [
            f"ml_engine.outliers.{type(s).__name__}" for s in stages
        ]
    loaded_pipeline = Pipeline.load(str(tmp_path / "pipeline"))
    loaded_model = PipelineModel.load(str(tmp_path / "model"))
    assert [type(s) for s in loaded_pipeline.getStages()] == [type(s) for s in pipeline.getStages()]
    assert [type(s) for s in loaded_model.stages] == [type(s) for s in model.stages]


def _wide(spark, n_cols):
    cols = [f"v{i}" for i in range(n_cols)]
    rows = [tuple(float((r * (i + 3)) % 17) for i in range(n_cols)) for r in range(12)]
    return spark.createDataFrame(rows, ", ".join(f"{c} double" for c in cols)), cols


@pytest.mark.parametrize(
    ("detector", "jobs_per_fit"),
    [
        # quantiles: the values' count (sample size), then all columns' percentiles at once
        (IQROutlierDetector, 2),
        (MADOutlierDetector, 3),  # + the absolute deviations' percentiles
        (ZScoreOutlierDetector, 1),
        (MahalanobisOutlierDetector, 5),
    ],
)
def test_fit_runs_the_same_number_of_jobs_for_5_and_40_columns(spark, detector, jobs_per_fit):
    counts = []
    for n in (5, 40):
        df, cols = _wide(spark, n)
        with JobCounter(spark) as jobs:
            detector(inputCols=cols).fit(df)
        counts.append(jobs.count)
    assert counts == [jobs_per_fit, jobs_per_fit]


def test_detectors_fitted_together_share_one_summary_pass_and_match_numpy(spark, maha):
    # A row with a null in w: the univariate detectors on x use its x, Mahalanobis skips it.
    df = maha.unionByName(spark.createDataFrame([(15, 40.0, 1.0, None)], maha.schema))
    detectors = [
        IQROutlierDetector(inputCols=["x", "y"]),
        MADOutlierDetector(inputCols=["x"]),
        ZScoreOutlierDetector(inputCols=["x", "w"]),
        MahalanobisOutlierDetector(inputCols=["x", "y", "w"]),
    ]
    with JobCounter(spark) as jobs:
        (iqr, mad, z, m), extra = fit_detectors(detectors, df, [F.sum("x"), F.count("w")])
    x = np.array([r[0] for r in MAHA] + [40.0])
    y = np.array([r[1] for r in MAHA] + [1.0])
    w = np.array([r[2] for r in MAHA])
    X = np.array(MAHA)
    q = [np.quantile(v, [0.25, 0.75], method="inverted_cdf") for v in (x, y)]
    assert (iqr.getQ1s(), iqr.getQ3s()) == ([q[0][0], q[1][0]], [q[0][1], q[1][1]])
    median = np.quantile(x, 0.5, method="inverted_cdf")
    assert mad.getMedians() == [median]
    assert mad.getMads() == [np.quantile(np.abs(x - median), 0.5, method="inverted_cdf")]
    assert z.getMeans() == pytest.approx([x.mean(), w.mean()])
    assert z.getStds() == pytest.approx([x.std(ddof=1), w.std(ddof=1)])
    assert m.getMeans() == pytest.approx(X.mean(axis=0).tolist())
    assert m.getStds() == pytest.approx(X.std(axis=0, ddof=1).tolist())
    assert np.allclose(np.array(m.getInvCorrelation()), np.linalg.inv(np.corrcoef(X.T)))
    assert extra == [pytest.approx(x.sum()), 15]
    # Alone: IQR 2 jobs, MAD 3, z-score 1, Mahalanobis 5 (see the test above) = 11. Together
    # the four first steps and the extra aggregates are one job: 11 - 3.
    assert jobs.count == 8


# ---------------------------------------------------------------------------------- policies
# Pure functions on a small batch; the same data is used by the job tests below.

UTC = timezone.utc
SCHEMA_YAML = """
name: tx
columns:
  - {name: id, type: string, nullable: false, role: record_id}
  - {name: ts, type: timestamp, role: event_time}
  - {name: amount, type: double, role: numeric_feature}
  - {name: items, type: int, role: numeric_feature}
  - {name: channel, type: string, role: key}
"""
ING = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
# amount: Q1 11, Q3 17 (fences 2 and 26 with k = 1.5), median 14, MAD 3.
# items: Q1 2, Q3 5 (fences -2.5 and 9.5).
BATCH = [
    ("T00", -50.0, 3),
    ("T01", 10.0, 1),
    ("T02", 11.0, 2),
    ("T03", 12.0, 2),
    ("T04", 13.0, 3),
    ("T05", 14.0, 3),
    ("T06", 15.0, 4),
    ("T07", 16.0, 40),
    ("T08", 17.0, 4),
    ("T09", 18.0, 5),
    ("T10", 95.5, 5),
]
DETECTORS = [
    {"method": "iqr", "k": 1.5, "columns": ["amount", "items"]},
    {"method": "mad", "threshold": 3.5, "columns": ["amount"]},
]
DATA_FIELDS = [
    T.StructField("id", T.StringType(), False),
    T.StructField("ts", T.TimestampType()),
    T.StructField("amount", T.DoubleType()),
    T.StructField("items", T.IntegerType()),
    T.StructField("channel", T.StringType()),
    T.StructField("batch_id", T.StringType()),
    T.StructField("source_file", T.StringType()),
    T.StructField("ingested_at", T.TimestampType()),
]
FLAGGED_STRUCT = T.StructType(DATA_FIELDS + list(OUTLIER_FIELDS))


def ts(i: int) -> datetime:
    # Microseconds, so a quarantined and restored row must come back exactly.
    return datetime(2026, 1, 1, 10, 0, i, 123456, tzinfo=UTC)


def data_row(i, rid, amount, items, batch="b1"):
    return (rid, ts(i), amount, items, "web", batch, "f1.csv", ING)


def expected_detection():
    """Per row of BATCH: (flag, score, reasons) from numpy/scipy and the textbook formulas."""
    am = np.array([r[1] for r in BATCH])
    it = np.array([r[2] for r in BATCH], dtype=float)
    q1a, q3a = np.quantile(am, [0.25, 0.75], method="inverted_cdf")
    q1i, q3i = np.quantile(it, [0.25, 0.75], method="inverted_cdf")
    med, mad = np.median(am), median_abs_deviation(am)
    out = []
    for _, a, i in BATCH:
        iqr_a = max(q1a - a, a - q3a, 0) / (1.5 * (q3a - q1a))
        iqr_i = max(q1i - i, i - q3i, 0) / (1.5 * (q3i - q1i))
        robust_z = 0.6745 * (a - med) / mad
        reasons = []
        if a < q1a - 1.5 * (q3a - q1a) or a > q3a + 1.5 * (q3a - q1a):
            reasons.append("iqr:amount")
        if i < q1i - 1.5 * (q3i - q1i) or i > q3i + 1.5 * (q3i - q1i):
            reasons.append("iqr:items")
        if abs(robust_z) > 3.5:
            reasons.append("mad:amount")
        out.append((bool(reasons), float(max(iqr_a, iqr_i, abs(robust_z) / 3.5)), reasons))
    return out


MAD_HALF_WIDTH = 3.5 * 3.0 / 0.6745  # threshold * MAD / 0.6745


def tukey(values, k=1.5):
    """(q1, q3, lower fence, upper fence) from numpy's quantiles."""
    q1, q3 = np.quantile(np.asarray(values, dtype=float), [0.25, 0.75], method="inverted_cdf")
    return float(q1), float(q3), float(q1 - k * (q3 - q1)), float(q3 + k * (q3 - q1))


# By hand: of 11 sorted values the quartiles are the 3rd and the 9th (ranks ceil(11 / 4) and
# ceil(33 / 4)): amount 11 and 17, fences [2, 26]; items 2 and 5, fences [-2.5, 9.5].
IQR_AMOUNT = tukey([r[1] for r in BATCH])
IQR_ITEMS = tukey([r[2] for r in BATCH])
assert IQR_AMOUNT == (11.0, 17.0, 2.0, 26.0) and IQR_ITEMS == (2.0, 5.0, -2.5, 9.5)


@pytest.fixture(scope="module")
def batch_df(spark):
    rows = [data_row(i, *r) for i, r in enumerate(BATCH)]
    return spark.createDataFrame(rows, T.StructType(DATA_FIELDS))


@pytest.fixture(scope="module")
def batch_model(batch_df):
    cfgs = [DetectorConfig(**d) for d in DETECTORS]
    return build_outlier_pipeline(cfgs, ["amount", "items"]).fit(batch_df)


def flagged_rows(keep=lambda rid: True):
    det = expected_detection()
    return [(*data_row(i, *r), *det[i]) for i, r in enumerate(BATCH) if keep(r[0])]


def test_flag_policy_adds_flag_score_and_reasons_row_by_row(spark, batch_df, batch_model):
    expected = spark.createDataFrame(flagged_rows(), FLAGGED_STRUCT)
    assert [r[2] for r in expected_detection() if r[0]] == [
        ["iqr:amount", "mad:amount"],
        ["iqr:items"],
        ["iqr:amount", "mad:amount"],
    ]
    assert_approx_df_equality(
        with_outlier_flags(batch_df, batch_model),
        expected,
        1e-12,
        ignore_nullable=True,
        ignore_row_order=True,
    )


def test_cap_policy_winsorises_to_the_tightest_fence_and_keeps_types(spark, batch_df, batch_model):
    # amount: IQR fences [2, 26], MAD fences 14 -/+ 15.57 -> [2, 26]; items: [-2.5, 9.5] -> 9.
    det = expected_detection()
    capped = {"T00": (2.0, 3), "T07": (16.0, 9), "T10": (26.0, 5)}
    rows = []
    for i, (rid, a, n) in enumerate(BATCH):
        rows.append((*data_row(i, rid, *capped.get(rid, (a, n))), *det[i]))
    expected = spark.createDataFrame(rows, FLAGGED_STRUCT)
    out = with_capped_values(batch_df, batch_model)
    assert out.schema["items"].dataType == T.IntegerType()
    assert_approx_df_equality(out, expected, 1e-12, ignore_nullable=True, ignore_row_order=True)


def test_cap_rounds_decimal_and_long_values_to_the_inside_of_the_fences(spark):
    # Both columns: Q1 2, Q3 8 (the 3rd and 9th of 11), k 1.2345 -> fences -5.407 and 15.407
    # (on neither grid).
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    rows = [(i, Decimal(v), v) for i, v in enumerate(values)]
    rows += [(9, Decimal(100), 10**15), (10, Decimal(-100), -(10**15))]
    schema = "id long, d decimal(6,2), n long"
    df = spark.createDataFrame(rows, schema)
    detector = IQROutlierDetector(
        inputCols=["d", "n"], k=1.2345, outputCol="f", scoreCol="s", reasonsCol="r"
    )
    model = Pipeline(stages=[detector]).fit(df)
    got = with_capped_values(df, model).select("id", "d", "n")
    expected = spark.createDataFrame(
        rows[:9] + [(9, Decimal("15.40"), 15), (10, Decimal("-5.40"), -5)], schema
    )
    assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)


def test_drop_policy_keeps_inliers_and_quarantines_outliers_with_reasons(
    spark, batch_df, batch_model
):
    kept, quarantined = split_outliers(batch_df, batch_model, record_key="id")
    outliers = {"T00", "T07", "T10"}
    expected_kept = spark.createDataFrame(
        flagged_rows(lambda rid: rid not in outliers), FLAGGED_STRUCT
    )
    assert_approx_df_equality(
        kept, expected_kept, 1e-12, ignore_nullable=True, ignore_row_order=True
    )
    raw = (
        '{{"id":"{}","ts":"2026-01-01T10:00:{:02d}.123456Z",'
        '"amount":{},"items":{},"channel":"web"}}'
    )
    expected_q = spark.createDataFrame(
        [
            (
                raw.format("T00", 0, -50.0, 3),
                f"iqr: amount=-50.0 below lower fence {IQR_AMOUNT[2]!r}; "
                f"mad: amount=-50.0 below lower fence {14.0 - MAD_HALF_WIDTH!r}",
                "outliers",
                "T00",
                "f1.csv",
                "b1",
                ING,
            ),
            (
                raw.format("T07", 7, 16.0, 40),
                f"iqr: items=40 above upper fence {IQR_ITEMS[3]!r}",
                "outliers",
                "T07",
                "f1.csv",
                "b1",
                ING,
            ),
            (
                raw.format("T10", 10, 95.5, 5),
                f"iqr: amount=95.5 above upper fence {IQR_AMOUNT[3]!r}; "
                f"mad: amount=95.5 above upper fence {14.0 + MAD_HALF_WIDTH!r}",
                "outliers",
                "T10",
                "f1.csv",
                "b1",
                ING,
            ),
        ],
        QUARANTINE_SCHEMA,
    )
    assert_df_equality(quarantined, expected_q, ignore_nullable=True, ignore_row_order=True)


# ---------------------------------------------------------------------------------- config


def _cfg(tmp_path, outliers: dict, root=None):
    schema_file = tmp_path / "schema.yaml"
    schema_file.write_text(SCHEMA_YAML, encoding="utf-8")
    return build_config(
        {
            "schema": str(schema_file),
            "storage": {"root": str(root or tmp_path / "store")},
            "batch_id": "b1",
            "outliers": outliers,
        },
        check_schema=True,
    )


@pytest.mark.parametrize(
    ("detectors", "message"),
    [
        (
            [{"method": "iqr", "columns": ["amount"]}, {"method": "mad", "columns": ["nope"]}],
            "outliers.detectors.1.columns: column 'nope' is not in schema 'tx'",
        ),
        (
            [{"method": "zscore", "columns": ["amount", "channel"]}],
            "outliers.detectors.0.columns: column 'channel' has type string; outlier "
            "detectors need numeric columns",
        ),
        (
            [{"method": "iqr", "columns": ["amount", "amount"]}],
            r"outliers.detectors.0: columns lists \['amount'\] more than once",
        ),
        ([{"method": "iqr", "columns": []}], "outliers.detectors.0: columns is empty"),
        ([{"method": "iqr", "k": 0}], "outliers.detectors.0.k: Input should be greater than 0"),
    ],
)
def test_config_errors_name_the_key(tmp_path, detectors, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(tmp_path, {"detectors": detectors})


def test_config_detector_without_columns_needs_numeric_features_in_the_schema(tmp_path):
    schema_file = tmp_path / "schema.yaml"
    schema_file.write_text(
        "name: t\ncolumns:\n  - {name: id, type: string}\n  - {name: x, type: double}\n",
        encoding="utf-8",
    )
    data = {"schema": str(schema_file), "storage": {"root": str(tmp_path)}}
    data["outliers"] = {"detectors": [{"method": "iqr"}]}
    with pytest.raises(ConfigError, match="outliers.detectors.0.columns: not set, and schema 't'"):
        build_config(data, check_schema=True)


# ---------------------------------------------------------------------------------- the job


def _silver_with(spark, tables, cfg, rows):
    """Creates silver and a quarantine row of stage clean."""
    df = spark.createDataFrame(rows, T.StructType(DATA_FIELDS))
    tables.overwrite(df, cfg.storage.table_path("silver"), partition_by=["batch_id"])
    clean_row = spark.createDataFrame(
        [("{}", "amount: not a number", "clean", "T50", "f1.csv", "b1", ING)], QUARANTINE_SCHEMA
    )
    tables.overwrite(clean_row, cfg.storage.table_path("quarantine"), partition_by=["batch_id"])


OTHER_BATCH = data_row(0, "T99", 1e6, 1, batch="b0")
OUTLIER_IDS = ("T00", "T07", "T10")
JOB_TABLES = ("silver", "quarantine", "outlier_stats", "features")
FEATURE_FLAGS = T.StructType([DATA_FIELDS[0], DATA_FIELDS[2], DATA_FIELDS[3], *OUTLIER_FIELDS])


def _tables_now(tables, cfg):
    return {n: tables.version(cfg.storage.table_path(n)) for n in JOB_TABLES}


@pytest.fixture(scope="module")
def policy_runs(spark, tmp_path_factory):
    """Per policy (lazily) on BATCH: detect_outliers then build_features, twice; returns cfg,
    tables, the two detect_outliers results, the table versions after the first runs and
    silver's version before them."""
    tables = open_tables(spark, "rs")
    cache = {}

    def run(policy):
        if policy not in cache:
            tmp = tmp_path_factory.mktemp(policy)
            cfg = _cfg(tmp, {"policy": policy, "detectors": DETECTORS})
            _silver_with(
                spark, tables, cfg, [data_row(i, *r) for i, r in enumerate(BATCH)] + [OTHER_BATCH]
            )
            silver_before = tables.version(cfg.storage.table_path("silver"))
            # As jobs run: through the run log.
            first = run_job("detect_outliers", spark, cfg, tables)
            run_job("build_features", spark, cfg, tables)
            after_first = _tables_now(tables, cfg)
            second = run_job("detect_outliers", spark, cfg, tables)
            run_job("build_features", spark, cfg, tables)
            cache[policy] = (cfg, tables, first, second, after_first, silver_before)
        return cache[policy]

    return run


def _read(cfg, tables, name, version=None):
    return tables.read(cfg.storage.table_path(name), version=version)


def _feature_flags(cfg, tables, version=None):
    cols = ("id", "amount", "items", IS_OUTLIER, OUTLIER_SCORE, OUTLIER_REASONS)
    return _read(cfg, tables, "features", version).select(*cols)


def _assert_feature_flags(spark, cfg, tables, version, rows):
    """The feature rows' (id, amount, items, flag, score, reasons) equal ``rows``."""
    assert_approx_df_equality(
        _feature_flags(cfg, tables, version),
        spark.createDataFrame(rows, FEATURE_FLAGS),
        1e-12,
        ignore_nullable=True,
        ignore_row_order=True,
    )


@pytest.mark.parametrize("policy", ["flag", "cap", "drop"])
def test_job_leaves_silver_as_clean_wrote_it(policy_runs, policy):
    cfg, tables, _, _, versions, silver_before = policy_runs(policy)
    # No commit to silver: a rerun of clean has no flags to erase.
    assert versions["silver"] == silver_before
    assert tables.version(cfg.storage.table_path("silver")) == silver_before


def test_flag_policy_flags_every_feature_row_of_the_batch(spark, policy_runs):
    cfg, tables, first, _, versions, _ = policy_runs("flag")
    det = expected_detection()
    _assert_feature_flags(
        spark,
        cfg,
        tables,
        versions["features"],
        [(rid, a, n, *det[i]) for i, (rid, a, n) in enumerate(BATCH)],
    )
    assert first.metrics == {
        "batch_id": "b1",
        "policy": "flag",
        "model": "fitted on batch b1",
        "detectors": 2,
        "rows": 11,
        "outliers": 3,
        "rows_out": 11,
    }
    assert first.outputs == {
        "outlier_stats": cfg.storage.table_path("outlier_stats"),
        "outlier_model": cfg.storage.path("models", "outliers"),
        # the quarantine table exists: this stage's rows of an earlier drop run are cleared
        "quarantine": cfg.storage.table_path("quarantine"),
    }


@pytest.mark.parametrize("policy", ["flag", "cap", "drop"])
def test_job_writes_outlier_stats_per_detector_and_column(spark, policy_runs, policy):
    cfg, tables, _, _, versions, _ = policy_runs(policy)
    half = MAD_HALF_WIDTH
    expected = spark.createDataFrame(
        [
            (
                "b1",
                0,
                "iqr",
                "amount",
                IQR_AMOUNT[2],
                IQR_AMOUNT[3],
                IQR_AMOUNT[0],
                IQR_AMOUNT[1],
                None,
                None,
                None,
                None,
                1.5,
                None,
                11,
                2,
                policy,
            ),
            (
                "b1",
                0,
                "iqr",
                "items",
                IQR_ITEMS[2],
                IQR_ITEMS[3],
                IQR_ITEMS[0],
                IQR_ITEMS[1],
                None,
                None,
                None,
                None,
                1.5,
                None,
                11,
                1,
                policy,
            ),
            (
                "b1",
                1,
                "mad",
                "amount",
                14.0 - half,
                14.0 + half,
                None,
                None,
                14.0,
                3.0,
                None,
                None,
                None,
                3.5,
                11,
                2,
                policy,
            ),
        ],
        OUTLIER_STATS_SCHEMA,
    )
    stats = _read(cfg, tables, "outlier_stats", versions["outlier_stats"])
    assert_approx_df_equality(stats, expected, 1e-12, ignore_nullable=True, ignore_row_order=True)


def test_job_cap_winsorises_the_feature_rows_and_silver_keeps_the_raw_values(spark, policy_runs):
    cfg, tables, _, _, versions, _ = policy_runs("cap")
    det = expected_detection()
    capped = {"T00": (2.0, 3), "T07": (16.0, 9), "T10": (26.0, 5)}  # fences [2, 26], [-2.5, 9.5]
    _assert_feature_flags(
        spark,
        cfg,
        tables,
        versions["features"],
        [(rid, *capped.get(rid, (a, n)), *det[i]) for i, (rid, a, n) in enumerate(BATCH)],
    )
    raw = {r.id: (r.amount, r.items) for r in _read(cfg, tables, "silver").collect()}
    assert [raw[i] for i in OUTLIER_IDS] == [(-50.0, 3), (16.0, 40), (95.5, 5)]


def test_job_drop_quarantines_outliers_and_features_leave_them_out(spark, policy_runs):
    cfg, tables, first, _, versions, _ = policy_runs("drop")
    det = expected_detection()
    _assert_feature_flags(
        spark,
        cfg,
        tables,
        versions["features"],
        [(rid, a, n, *det[i]) for i, (rid, a, n) in enumerate(BATCH) if rid not in OUTLIER_IDS],
    )
    q = _read(cfg, tables, "quarantine", versions["quarantine"])
    assert sorted((r.stage, r.record_key) for r in q.collect()) == [
        ("clean", "T50"),
        ("outliers", "T00"),
        ("outliers", "T07"),
        ("outliers", "T10"),
    ]
    assert first.metrics["rows_out"] == 8
    assert first.outputs["quarantine"] == cfg.storage.table_path("quarantine")


def test_build_features_refuses_a_policy_that_disagrees_on_drop_with_detect_outliers(
    spark, policy_runs
):
    """Rows detect_outliers quarantined under drop must not also reach features (nor rows
    build_features drops be missing from quarantine): the two jobs' policies must agree."""
    cfg, tables, *_ = policy_runs("drop")
    features = cfg.storage.table_path("features")
    stats = cfg.storage.table_path("outlier_stats")
    before = tables.version(features)
    flag = cfg.model_copy(update={"outliers": cfg.outliers.model_copy(update={"policy": "flag"})})
    with pytest.raises(JobError) as err:
        run_job("build_features", spark, flag, tables)
    assert str(err.value) == (
        "build_features: outliers.policy is flag, but detect_outliers applied another policy "
        f"to batch 'b1' (drop) ({stats}); both jobs must apply the same one (with drop the "
        "outliers go to quarantine instead of features): run detect_outliers for the batch "
        "with policy flag, or build the features with --set outliers.policy=drop"
    )
    with pytest.raises(JobError) as err:  # b0: in silver, never given to detect_outliers
        run_job("build_features", spark, cfg.model_copy(update={"batch_id": "b0"}), tables)
    assert str(err.value) == (
        "build_features: outliers.policy is drop but detect_outliers has not run for batch "
        f"'b0' (no rows in {stats}): run it first, so that the rows left out of features are "
        "in quarantine"
    )
    assert tables.version(features) == before


def test_one_features_table_holds_the_rows_of_one_policy(spark, tmp_path):
    """Capped values of one batch must not sit beside raw values of another in features:
    another policy for one batch is refused until every batch moves to it."""
    tables = open_tables(spark, "rs")

    def cfg_of(policy, batch, **features):
        cfg = _cfg(tmp_path, {"policy": policy, "detectors": DETECTORS})
        return cfg.model_copy(
            update={"batch_id": batch, "features": cfg.features.model_copy(update=features)}
        )

    _silver_with(
        spark,
        tables,
        cfg_of("cap", "b1"),
        [data_row(i, *r) for i, r in enumerate(BATCH)] + [OTHER_BATCH],
    )
    for job in ("detect_outliers", "build_features"):
        run_job(job, spark, cfg_of("cap", "b1"), tables)
    run_job("detect_outliers", spark, cfg_of("flag", "b0"), tables)
    features = cfg_of("cap", "b1").storage.table_path("features")
    stats = cfg_of("cap", "b1").storage.table_path("outlier_stats")
    before = tables.version(features)
    with pytest.raises(JobError) as err:  # the same batch: both jobs apply one policy
        run_job("build_features", spark, cfg_of("flag", "b1"), tables)
    assert str(err.value).startswith(
        f"build_features: outliers.policy is flag, but detect_outliers applied another policy "
        f"to batch 'b1' (cap) ({stats}); both jobs must apply the same one"
    )
    with pytest.raises(JobError) as err:  # another batch of features: capped beside raw
        run_job("build_features", spark, cfg_of("flag", "b0"), tables)
    assert str(err.value) == (
        "build_features: outliers.policy is flag, but the features of batch 'b1' (cap) were "
        f"built with another policy ({stats}): one features table holds the rows of one "
        "policy, or a model would train on capped and raw values (or on kept and dropped "
        "outliers) at once. Keep --set outliers.policy=cap, or move every batch to flag: run "
        "detect_outliers with it for each batch, then build_features with --set "
        "features.rebuild=true"
    )
    assert tables.version(features) == before
    # the way the message gives: every batch moved to flag, then one rebuild
    run_job("detect_outliers", spark, cfg_of("flag", "b1"), tables)
    run_job("build_features", spark, cfg_of("flag", "b1", rebuild=True), tables)
    raw = [(rid, amount) for rid, amount, _ in BATCH] + [("T99", 1e6)]
    assert_df_equality(
        tables.read(features).select("id", "amount"),
        spark.createDataFrame(raw, "id string, amount double"),
        ignore_nullable=True,
        ignore_row_order=True,
    )


@pytest.mark.parametrize("policy", ["flag", "cap", "drop"])
def test_job_rerun_on_the_same_batch_gives_the_same_tables(policy_runs, policy):
    cfg, tables, first, second, versions, _ = policy_runs(policy)
    for name, version in versions.items():
        assert_df_equality(
            _read(cfg, tables, name),
            _read(cfg, tables, name, version),
            ignore_row_order=True,
            allow_nan_equality=True,
        )
    # refit auto (the default): the second run reuses the detector saved by the first.
    assert (first.metrics["model"], second.metrics["model"]) == (
        "fitted on batch b1",
        "reused, fitted on batch b1",
    )
    assert first.metrics | {"model": "reused, fitted on batch b1"} == second.metrics


@pytest.mark.parametrize("refit", ["never", "auto"])
def test_job_on_a_later_batch_applies_the_saved_model(spark, tmp_path, policy_runs, refit):
    fitted_cfg, tables, *_ = policy_runs("flag")
    model_path = fitted_cfg.storage.path("models", "outliers")
    cfg = _cfg(tmp_path, {"refit": refit, "model_path": model_path, "detectors": DETECTORS})
    # Values normal for this batch but far outside the fences fitted on b1 (amount 2..26).
    rows = [data_row(i, f"T{i + 20}", 100.0 + i, 3) for i in range(5)]
    _silver_with(spark, tables, cfg, rows)
    result = run_detect_outliers(spark, cfg, tables)
    run_build_features(spark, cfg, tables)
    features = _read(cfg, tables, "features")
    reasons = [tuple(r.outlier_reasons) for r in features.collect()]
    assert reasons == [("iqr:amount", "mad:amount")] * 5
    assert result.metrics["model"] == "reused, fitted on batch b1"
    assert result.metrics["outliers"] == 5


def test_job_refits_when_asked_or_when_the_detector_settings_changed(spark, tmp_path, policy_runs):
    fitted_cfg, tables, *_ = policy_runs("flag")
    model_path = str(tmp_path / "model")
    shutil.copytree(fitted_cfg.storage.path("models", "outliers"), model_path)
    rows = [data_row(i, f"T{i + 20}", 100.0 + i, 3) for i in range(5)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    always = _cfg(
        tmp_path / "a", {"refit": "always", "model_path": model_path, "detectors": DETECTORS}
    )
    _silver_with(spark, tables, always, rows)
    assert run_detect_outliers(spark, always, tables).metrics["model"] == "fitted on batch b1"
    changed = [{**DETECTORS[0], "k": 4.0}, DETECTORS[1]]
    auto = _cfg(tmp_path / "b", {"model_path": model_path, "detectors": changed})
    _silver_with(spark, tables, auto, rows)
    assert run_detect_outliers(spark, auto, tables).metrics["model"] == (
        "fitted on batch b1 (the saved detector had other settings)"
    )


def test_job_with_refit_never_and_without_a_saved_model_names_path_and_key(spark, tmp_path):
    tables = open_tables(spark, "rs")
    cfg = _cfg(tmp_path, {"refit": False, "detectors": DETECTORS})
    _silver_with(spark, tables, cfg, [data_row(0, "T00", 1.0, 1)])
    path = cfg.storage.path("models", "outliers")
    with pytest.raises(
        JobError, match=f"outliers.refit is never but no outlier model is saved at {path}"
    ):
        run_detect_outliers(spark, cfg, tables)


def test_no_detectors_fit_nothing_and_features_ignore_a_detector_saved_before(
    spark, tmp_path, policy_runs
):
    # data without numeric columns: outliers.detectors: [] (a detector saved by an earlier
    # config is not applied)
    fitted_cfg, tables, *_ = policy_runs("flag")
    model_path = fitted_cfg.storage.path("models", "outliers")
    cfg = _cfg(tmp_path, {"model_path": model_path, "detectors": []})
    _silver_with(spark, tables, cfg, [data_row(i, *r) for i, r in enumerate(BATCH)])
    result = run_detect_outliers(spark, cfg, tables)
    assert (result.outputs, result.metrics, result.notes) == (
        {},
        {"batch_id": "b1", "detectors": 0},
        [
            "outliers.detectors is empty: no detector fitted, no row checked; build_features "
            "writes the outlier columns null"
        ],
    )
    assert not (tmp_path / "store" / "tables" / "outlier_stats").exists()
    features = run_build_features(spark, cfg, tables)
    expected = spark.createDataFrame(
        [(rid, a, n, None, None, None) for rid, a, n in BATCH], FEATURE_FLAGS
    )
    assert_df_equality(
        _feature_flags(cfg, tables), expected, ignore_nullable=True, ignore_row_order=True
    )
    assert features.metrics["outliers"] == "none: outliers.detectors is empty"


def test_build_features_without_a_saved_detector_writes_null_flags_and_says_so(spark, tmp_path):
    tables = open_tables(spark, "rs")
    cfg = _cfg(tmp_path, {"detectors": DETECTORS})
    _silver_with(spark, tables, cfg, [data_row(i, *r) for i, r in enumerate(BATCH)])
    result = run_build_features(spark, cfg, tables)
    expected = spark.createDataFrame(
        [(rid, a, n, None, None, None) for rid, a, n in BATCH], FEATURE_FLAGS
    )
    assert_df_equality(
        _feature_flags(cfg, tables), expected, ignore_nullable=True, ignore_row_order=True
    )
    path = cfg.storage.path("models", "outliers")
    assert result.metrics["outliers"] == (
        f"not applied: no detector saved at {path} (run detect_outliers)"
    )


def test_job_runs_the_same_number_of_spark_jobs_for_5_and_20_columns(spark, tmp_path):
    tables = open_tables(spark, "rs")
    counts = []
    for n in (5, 20):
        cols = [f"v{i}" for i in range(n)]
        schema_file = tmp_path / f"schema{n}.yaml"
        schema_file.write_text(
            "name: wide\ncolumns:\n  - {name: id, type: string, role: record_id}\n"
            + "".join(f"  - {{name: {c}, type: double, role: numeric_feature}}\n" for c in cols),
            encoding="utf-8",
        )
        cfg = build_config(
            {
                "schema": str(schema_file),
                "storage": {"root": str(tmp_path / f"store{n}")},
                "batch_id": "b1",
                "outliers": {
                    "policy": "drop",
                    "detectors": [{"method": m} for m in ("iqr", "mad", "zscore", "mahalanobis")],
                },
            }
        )
        struct = T.StructType(
            [T.StructField("id", T.StringType())]
            + [T.StructField(c, T.DoubleType()) for c in cols]
            + DATA_FIELDS[5:]
        )
        rows = [
            (
                f"T{r}",
                *[float((r * (i + 3)) % 17) for i in range(n)],
                "b1",
                "f.csv",
                ING,
            )
            for r in range(12)
        ]
        tables.overwrite(
            spark.createDataFrame(rows, struct),
            cfg.storage.table_path("silver"),
            partition_by=["batch_id"],
        )
        with JobCounter(spark) as jobs:
            run_detect_outliers(spark, cfg, tables)
        counts.append(jobs.count)
    assert counts[0] == counts[1]
