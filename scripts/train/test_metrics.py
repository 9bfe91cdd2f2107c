"""Metric and feature arithmetic against values worked out by hand (run: scripts/train/test)."""

import math
import unittest
from statistics import NormalDist

import numpy as np

import features
import metrics


class MetricsByHand(unittest.TestCase):
    # y - f = [-0.01, -0.01, 0.04, -0.01]
    y = np.array([0.01, -0.02, 0.03, 0.0])
    f = np.array([0.02, -0.01, -0.01, 0.01])

    def test_mae_is_mean_absolute_error(self):
        self.assertAlmostEqual(metrics.mae(self.y, self.f), 0.07 / 4, places=15)

    def test_rmse_is_root_mean_squared_error(self):
        # (1 + 1 + 16 + 1) e-4 / 4 = 4.75e-4
        self.assertAlmostEqual(metrics.rmse(self.y, self.f), math.sqrt(4.75e-4), places=15)

    def test_mase_scale_is_mean_absolute_change_of_training_log_price(self):
        log_close = np.array([0.0, 0.01, -0.01, 0.02])  # changes 0.01, -0.02, 0.03
        scale = metrics.mase_scale(log_close)
        self.assertAlmostEqual(scale, 0.02, places=15)
        self.assertAlmostEqual(metrics.mase(self.y, self.f, scale), 0.0175 / 0.02, places=12)
        # The random walk (log-return forecast 0) on these four days: mean|y| = 0.06 / 4.
        self.assertAlmostEqual(metrics.mase(self.y, np.zeros(4), scale), 0.015 / 0.02, places=12)

    def test_hit_rate_counts_zero_as_not_up(self):
        # f > 0: T F F T; y > 0: T F T F (y = 0 is not up) -> agree on 2 of 4
        self.assertEqual(metrics.hit_rate(self.y, self.f), 0.5)
        self.assertEqual(metrics.hit_rate(np.array([0.0, 0.0]), np.array([0.0, 1.0])), 0.5)
        self.assertEqual(metrics.always_up_hit_rate(self.y), 0.5)
        self.assertEqual(metrics.always_up_hit_rate(np.array([0.1, 0.2, -0.1])), 2 / 3)

    def test_pinball_penalises_each_side_by_its_level(self):
        y = np.array([1.0, 2.0])
        q = np.array([2.0, 0.0])  # y - q = -1, +2
        # tau 0.1: 0.9 * 1 and 0.1 * 2 -> (0.9 + 0.2) / 2
        self.assertAlmostEqual(metrics.pinball(y, q, 0.1), 0.55, places=15)
        self.assertAlmostEqual(metrics.pinball(y, q, 0.5), 0.75, places=15)
        self.assertAlmostEqual(metrics.pinball(y, q, 0.9), 0.95, places=15)
        qs = np.stack([q, q, q], axis=1)
        self.assertAlmostEqual(metrics.mean_pinball(y, qs, [0.1, 0.5, 0.9]), 0.75, places=15)

    def test_pinball_per_day_averages_the_levels(self):
        y = np.array([1.0, 2.0])
        qs = np.array([[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
        # day 1 (d = -1): 0.9, 0.5, 0.1; day 2 (d = 2): 0.2, 1.0, 1.8
        np.testing.assert_allclose(metrics.pinball_per_day(y, qs, [0.1, 0.5, 0.9]), [0.5, 1.0], atol=1e-15)

    def test_diebold_mariano_by_hand(self):
        # d = [1, -1, 2, 0]: mean 0.5, population variance 1.25, DM = 0.5 / sqrt(1.25 / 4)
        dm = metrics.diebold_mariano(np.array([2.0, 0.0, 3.0, 1.0]), np.array([1.0, 1.0, 1.0, 1.0]))
        self.assertAlmostEqual(dm["statistic"], 0.8944271909999159, places=12)
        self.assertAlmostEqual(dm["p_value"], 2 * (1 - NormalDist().cdf(0.8944271909999159)), places=12)
        self.assertAlmostEqual(dm["p_value"], 0.3711, places=4)
        same = metrics.diebold_mariano(np.ones(3), np.ones(3))
        self.assertEqual((same["statistic"], same["p_value"]), (0.0, 1.0))

    def test_coverage_is_inclusive_at_both_ends(self):
        y = np.array([0.0, 1.0, 2.0, 3.0])
        lo = np.array([0.0, 2.0, 1.0, 4.0])
        hi = np.array([1.0, 3.0, 2.0, 5.0])
        self.assertEqual(metrics.coverage(y, lo, hi), 0.5)

    def test_rolling_std_is_sample_std_of_trailing_window(self):
        s = metrics.rolling_std(np.array([1.0, 2.0, 3.0, 5.0]), 3)
        self.assertTrue(np.isnan(s[0]) and np.isnan(s[1]))
        self.assertAlmostEqual(s[2], 1.0, places=15)
        self.assertAlmostEqual(s[3], math.sqrt(21 / 9), places=15)

    def test_gaussian_quantiles_are_zero_mean_normal(self):
        q = metrics.gaussian_quantiles(np.array([2.0]), [0.05, 0.5, 0.95])
        np.testing.assert_allclose(q[0], [-2 * 1.6448536269514722, 0.0, 2 * 1.6448536269514722], atol=1e-12)

    def test_summary_ties_the_pieces_together(self):
        y = np.array([0.01, -0.02])
        model_q = np.array([[-0.02, 0.005, 0.02], [-0.01, 0.001, 0.03]])
        gauss_q = np.array([[-0.015, 0.0, 0.015], [-0.03, 0.0, 0.03]])
        s = metrics.summary(y, model_q, gauss_q, [0.05, 0.5, 0.95], scale=0.01)
        self.assertEqual(s["n"], 2)
        self.assertAlmostEqual(s["mae"]["model"], (0.005 + 0.021) / 2, places=15)
        self.assertAlmostEqual(s["mase"]["random_walk"], 0.015 / 0.01, places=12)
        self.assertEqual(s["hit_rate"]["model"], 0.5)  # up/up right, up/down wrong
        self.assertEqual(s["coverage_90"]["model"], 0.5)  # -0.02 < -0.01 is outside
        self.assertEqual(s["coverage_90"]["gaussian_rolling_vol"], 1.0)
        self.assertAlmostEqual(s["coverage_90"]["nominal"], 0.9)

    def test_bad_input_is_refused(self):
        with self.assertRaises(ValueError):
            metrics.mae(np.array([1.0]), np.array([1.0, 2.0]))
        with self.assertRaises(ValueError):
            metrics.mae(np.array([]), np.array([]))
        with self.assertRaises(ValueError):
            metrics.pinball(np.array([1.0]), np.array([1.0]), 1.0)
        with self.assertRaises(ValueError):
            metrics.mase(self.y, self.f, 0.0)


class FeaturesByHand(unittest.TestCase):
    bars = features.Bars(
        ["2020-01-02", "2020-01-03"],
        open=np.array([99.0, 105.0]),
        high=np.array([101.0, 121.0]),
        low=np.array([98.0, 99.0]),
        close=np.array([100.0, 110.0]),
        volume=np.array([1000.0, 2000.0]),
    )

    def test_one_row_per_bar_after_the_first_in_spec_order(self):
        rows = features.window_features(self.bars, 1)
        self.assertEqual(rows.shape, (1, features.N_FEATURES))
        self.assertEqual(rows.dtype, np.float32)
        expected = np.array([math.log(1.1), math.log(1.1), math.log(0.9), math.log(1.05), math.log(2.0)])
        np.testing.assert_array_equal(rows[0], expected.astype(np.float32))

    def test_window_needs_exactly_window_plus_one_bars(self):
        self.assertEqual(features.bars_needed(30), 31)
        with self.assertRaises(features.BarError):
            features.window_features(self.bars, 2)

    def test_non_positive_values_are_refused(self):
        bad = features.Bars(self.bars.date, self.bars.open, self.bars.high, self.bars.low,
                            self.bars.close, np.array([1000.0, 0.0]))
        with self.assertRaisesRegex(features.BarError, "volume"):
            features.feature_rows(bad)


if __name__ == "__main__":
    unittest.main()
