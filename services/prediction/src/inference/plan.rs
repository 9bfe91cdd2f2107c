//! One optimised tract plan per pinned batch size.
//!
//! tract-onnx 0.23 runs this LSTM with a variable batch only at batch 1 (batch > 1 fails at
//! run time), so each batch size gets its own plan: parse → type → bind the `batch` symbol →
//! optimise → runnable. A request for `n` windows is cut into plan runs by a schedule that
//! minimises the *measured* cost (each plan is timed at build, which is also its warm-up):
//! e.g. 70 windows may run as one 64 and one 8 (two padding rows) rather than 64 + 6 × 1.
//! Padding rows repeat the last real window and their outputs are dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{DimLike as _, TDim};
use tract_onnx::tract_core::ops::scan::Scan;

/// Why a plan could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// tract refused the graph (unsupported operator, inconsistent shapes, ...).
    #[error("tract: {0}")]
    Tract(String),
    /// The graph's interface is not the one the card describes.
    #[error("{what}: expected {expected}, found {found}")]
    Interface {
        what: String,
        expected: String,
        found: String,
    },
    /// The caller passed an input of the wrong size (a defect in this crate).
    #[error("input holds {found} values, expected {expected}")]
    InputSize { expected: usize, found: usize },
}

fn tract(error: impl std::fmt::Display) -> PlanError {
    PlanError::Tract(format!("{error:#}"))
}

/// What the card says the graph looks like.
#[derive(Debug, Clone)]
pub struct Interface {
    pub input: String,
    pub output: String,
    pub window: usize,
    pub features: usize,
    /// Values per window in the output (the quantile levels).
    pub outputs: usize,
    /// ONNX `metadata_props` that must hold these values.
    pub metadata: Vec<(&'static str, String)>,
}

type Plan = Arc<TypedRunnableModel>;

/// The plans of one version, with the schedule that splits a request into plan runs.
pub struct Plans {
    window: usize,
    features: usize,
    outputs: usize,
    /// Ascending batch sizes and their plans.
    sizes: Vec<usize>,
    plans: Vec<Plan>,
    /// Median measured seconds of one run of each plan.
    costs: Vec<f64>,
    /// `schedule[n]`: the plan sizes that serve `n` windows at the least measured cost, for
    /// `n` up to the largest size (larger requests take whole largest runs first).
    schedule: Vec<Vec<usize>>,
}

impl std::fmt::Debug for Plans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plans")
            .field("window", &self.window)
            .field("sizes", &self.sizes)
            .field("costs", &self.costs)
            .finish_non_exhaustive()
    }
}

/// Per-worker run state: one spawned tract state per plan.
pub struct States {
    states: Vec<TypedSimpleState>,
    buffer: Vec<f32>,
}

/// Timed runs per plan at build (after two untimed ones).
const WARM_UP_RUNS: usize = 7;

impl Plans {
    /// Parses `onnx`, checks it against `interface`, builds and warms up one plan per size in
    /// `batch_sizes` (1 is always included), and measures each.
    pub fn build(
        onnx: &[u8],
        interface: &Interface,
        batch_sizes: &[usize],
    ) -> Result<Self, PlanError> {
        let framework = tract_onnx::onnx();
        let proto = framework
            .proto_model_for_read(&mut &onnx[..])
            .map_err(tract)?;
        let model = framework.model_for_proto_model(&proto).map_err(tract)?;
        let mut typed = model.into_typed().map_err(tract)?;
        let batch = check_interface(&typed, interface)?;
        // The metadata after the shapes: a wrong-shape graph is named as such.
        for (key, expected) in &interface.metadata {
            let found = proto
                .metadata_props
                .iter()
                .find(|p| p.key == *key)
                .map(|p| p.value.clone());
            if found.as_deref() != Some(expected.as_str()) {
                return Err(PlanError::Interface {
                    what: format!("graph metadata {key}"),
                    expected: expected.clone(),
                    found: found.unwrap_or_else(|| "nothing".into()),
                });
            }
        }
        restart_recurrences_every_run(&mut typed);

        let mut sizes: Vec<usize> = batch_sizes.iter().copied().filter(|b| *b > 0).collect();
        sizes.push(1);
        sizes.sort_unstable();
        sizes.dedup();
        let mut plans = Vec::with_capacity(sizes.len());
        for &size in &sizes {
            let bound = typed
                .set_symbols(&HashMap::from([(batch.clone(), TDim::Val(size as i64))]))
                .map_err(tract)?;
            let plan = bound
                .into_optimized()
                .map_err(tract)?
                .into_runnable()
                .map_err(tract)?;
            let fact = plan.model().output_fact(0).map_err(tract)?;
            let dims: Vec<Option<usize>> = fact.shape.iter().map(|d| d.to_usize().ok()).collect();
            if fact.datum_type != f32::datum_type() || dims != [Some(size), Some(interface.outputs)]
            {
                return Err(PlanError::Interface {
                    what: format!("output of the batch-{size} plan"),
                    expected: format!("f32 [{size}, {}]", interface.outputs),
                    found: format!("{:?} {:?}", fact.datum_type, fact.shape),
                });
            }
            plans.push(plan);
        }
        let mut this = Self {
            window: interface.window,
            features: interface.features,
            outputs: interface.outputs,
            sizes,
            plans,
            costs: Vec::new(),
            schedule: Vec::new(),
        };
        this.measure()?;
        Ok(this)
    }

    /// Runs every plan on zeros, timing it; the schedule follows from the medians.
    fn measure(&mut self) -> Result<(), PlanError> {
        let mut states = self.spawn_states()?;
        let mut costs = Vec::with_capacity(self.sizes.len());
        for (i, &size) in self.sizes.iter().enumerate() {
            let zeros = vec![0.0f32; size * self.window_len()];
            let mut samples = Vec::with_capacity(WARM_UP_RUNS);
            for run in 0..WARM_UP_RUNS + 2 {
                let started = Instant::now();
                self.run_plan(&mut states, i, &zeros)?;
                if run >= 2 {
                    samples.push(started.elapsed().as_secs_f64());
                }
            }
            samples.sort_by(f64::total_cmp);
            costs.push(samples[samples.len() / 2]);
        }
        self.costs = costs;
        self.schedule = schedule(&self.sizes, &self.costs);
        Ok(())
    }

    /// One state per plan, for one worker.
    pub fn spawn_states(&self) -> Result<States, PlanError> {
        Ok(States {
            states: self
                .plans
                .iter()
                .map(|p| p.spawn().map_err(tract))
                .collect::<Result<_, _>>()?,
            buffer: Vec::new(),
        })
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// Values in one window's input (window × features).
    pub fn window_len(&self) -> usize {
        self.window * self.features
    }

    /// Values in one window's output.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Median measured seconds per run, by size.
    pub fn costs(&self) -> &[f64] {
        &self.costs
    }

    pub fn largest(&self) -> usize {
        *self.sizes.last().expect("at least the batch-1 plan")
    }

    /// The plan runs (by batch size) that serve `n` windows.
    pub fn runs_for(&self, n: usize) -> Vec<usize> {
        let largest = self.largest();
        let mut runs = Vec::new();
        let mut left = n;
        while left > largest {
            runs.push(largest);
            left -= largest;
        }
        runs.extend_from_slice(&self.schedule[left]);
        runs
    }

    /// Runs `n` windows (`input` holds `n × window × features` values, windows back to back)
    /// and returns `n × outputs` values.
    pub fn run(&self, states: &mut States, input: &[f32], n: usize) -> Result<Vec<f32>, PlanError> {
        let per = self.window_len();
        if input.len() != n * per {
            return Err(PlanError::InputSize {
                expected: n * per,
                found: input.len(),
            });
        }
        let mut out = Vec::with_capacity(n * self.outputs);
        let mut done = 0;
        for size in self.runs_for(n) {
            let index = self
                .sizes
                .iter()
                .position(|s| *s == size)
                .expect("scheduled size");
            let take = size.min(n - done);
            let chunk = &input[done * per..(done + take) * per];
            let values = if take == size {
                self.run_plan(states, index, chunk)?
            } else {
                let mut buffer = std::mem::take(&mut states.buffer);
                buffer.clear();
                buffer.extend_from_slice(chunk);
                let last = &chunk[(take - 1) * per..];
                for _ in take..size {
                    buffer.extend_from_slice(last);
                }
                let values = self.run_plan(states, index, &buffer);
                states.buffer = buffer;
                values?
            };
            out.extend_from_slice(&values[..take * self.outputs]);
            done += take;
        }
        Ok(out)
    }

    fn run_plan(
        &self,
        states: &mut States,
        index: usize,
        input: &[f32],
    ) -> Result<Vec<f32>, PlanError> {
        let size = self.sizes[index];
        let tensor =
            Tensor::from_shape(&[size, self.window, self.features], input).map_err(tract)?;
        let outputs = states.states[index]
            .run(tvec![tensor.into_tvalue()])
            .map_err(tract)?;
        let view = outputs[0].try_as_plain_ram().map_err(tract)?;
        Ok(view.as_slice::<f32>().map_err(tract)?.to_vec())
    }
}

/// ONNX `LSTM` starts every run from its initial state (zeros here). tract lowers it to a
/// `Scan` that, by default, carries its last hidden state into the next run of the same
/// spawned state (it is built for streaming), so a worker that reuses its state — as it
/// should, for speed — would seed each window with the previous window's final state: the
/// outputs drift by up to 1.6e-4 on 1.0.0's golden cases (found by running every case twice
/// on one state). `reset_every_turn` restores the ONNX semantics.
fn restart_recurrences_every_run(model: &mut TypedModel) -> usize {
    let mut count = 0;
    for node in model.nodes_mut() {
        if let Some(scan) = node.op_as_mut::<Scan>() {
            scan.reset_every_turn = true;
            count += 1;
        }
    }
    count
}

/// Checks names, types and shapes; returns the batch symbol.
fn check_interface(typed: &TypedModel, interface: &Interface) -> Result<Symbol, PlanError> {
    let mismatch = |what: &str, expected: String, found: String| PlanError::Interface {
        what: what.to_owned(),
        expected,
        found,
    };
    let inputs = typed.input_outlets().map_err(tract)?;
    let outputs = typed.output_outlets().map_err(tract)?;
    if inputs.len() != 1 || outputs.len() != 1 {
        return Err(mismatch(
            "graph inputs/outputs",
            "one input and one output".into(),
            format!("{} inputs and {} outputs", inputs.len(), outputs.len()),
        ));
    }
    let input_name = typed.node(inputs[0].node).name.clone();
    if input_name != interface.input {
        return Err(mismatch(
            "graph input name",
            interface.input.clone(),
            input_name,
        ));
    }
    let output_name = typed
        .outlet_label(outputs[0])
        .map(str::to_owned)
        .unwrap_or_else(|| typed.node(outputs[0].node).name.clone());
    if output_name != interface.output {
        return Err(mismatch(
            "graph output name",
            interface.output.clone(),
            output_name,
        ));
    }
    let fact = typed.input_fact(0).map_err(tract)?;
    let dims: Vec<TDim> = fact.shape.iter().cloned().collect();
    let shape_ok = fact.datum_type == f32::datum_type()
        && dims.len() == 3
        && dims[1].to_usize().ok() == Some(interface.window)
        && dims[2].to_usize().ok() == Some(interface.features);
    let batch = match dims.first() {
        Some(TDim::Sym(symbol)) if shape_ok => symbol.clone(),
        _ => {
            return Err(mismatch(
                "graph input shape",
                format!("f32 [batch, {}, {}]", interface.window, interface.features),
                format!("{:?} {:?}", fact.datum_type, fact.shape),
            ));
        }
    };
    let out = typed.output_fact(0).map_err(tract)?;
    let out_dims: Vec<TDim> = out.shape.iter().cloned().collect();
    let out_ok = out.datum_type == f32::datum_type()
        && out_dims.len() == 2
        && out_dims[0] == TDim::Sym(batch.clone())
        && out_dims[1].to_usize().ok() == Some(interface.outputs);
    if !out_ok {
        return Err(mismatch(
            "graph output shape",
            format!("f32 [batch, {}]", interface.outputs),
            format!("{:?} {:?}", out.datum_type, out.shape),
        ));
    }
    Ok(batch)
}

/// For every `n` up to the largest size, the cheapest multiset of plan runs covering `n`
/// windows (dynamic programming over the measured costs).
fn schedule(sizes: &[usize], costs: &[f64]) -> Vec<Vec<usize>> {
    let largest = *sizes.last().unwrap_or(&1);
    let mut best = vec![0.0f64; largest + 1];
    let mut choice = vec![0usize; largest + 1];
    for n in 1..=largest {
        best[n] = f64::INFINITY;
        for (size, cost) in sizes.iter().zip(costs) {
            let total = cost + best[n.saturating_sub(*size)];
            if total < best[n] {
                best[n] = total;
                choice[n] = *size;
            }
        }
    }
    (0..=largest)
        .map(|n| {
            let mut runs = Vec::new();
            let mut left = n;
            while left > 0 {
                runs.push(choice[left]);
                left = left.saturating_sub(choice[left]);
            }
            runs
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::schedule;

    #[test]
    fn the_schedule_minimises_measured_cost() {
        // A batch-8 run costs 2.5 singles, a batch-64 run 12.
        let sizes = [1, 8, 64];
        let costs = [1.0, 2.5, 12.0];
        let s = schedule(&sizes, &costs);
        let sorted = |n: usize| {
            let mut runs = s[n].clone();
            runs.sort_unstable();
            runs
        };
        assert_eq!(sorted(0), Vec::<usize>::new());
        assert_eq!(
            sorted(2),
            vec![1, 1],
            "two singles (2) beat a padded 8 (2.5)"
        );
        assert_eq!(
            sorted(3),
            vec![8],
            "a padded 8 (2.5) beats three singles (3)"
        );
        assert_eq!(sorted(33), vec![1, 8, 8, 8, 8], "11 beats a padded 64 (12)");
        assert_eq!(sorted(40), vec![64], "12 beats five batch-8 runs (12.5)");
        assert_eq!(sorted(64), vec![64]);
        for (n, runs) in s.iter().enumerate() {
            assert!(runs.iter().sum::<usize>() >= n, "{n} covered by {runs:?}");
        }
    }
}
