//! One exported ensemble, parsed and optimised by tract, run on batches of rows.

use std::sync::Arc;

use tract_onnx::prelude::*;

/// The ensemble's output tensor: `[N, 2]` probabilities of down and up.
pub const PROBABILITIES: &str = "probabilities";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model {file} does not load: {reason}")]
    Load { file: String, reason: String },
    #[error("inference failed: {0}")]
    Run(String),
    #[error("row {row}: {reason}")]
    InvalidFeatures { row: usize, reason: String },
}

impl ModelError {
    /// Stable error code for API responses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Load { .. } => "model-unavailable",
            Self::Run(_) => "inference-failed",
            Self::InvalidFeatures { .. } => "invalid-features",
        }
    }
}

/// A member learner's vote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemberVote {
    pub name: String,
    pub probability_up: f64,
}

/// The ensemble's forecast for one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub probability_up: f64,
    pub members: Vec<MemberVote>,
}

/// A runnable ensemble: input `features [N, width]`, outputs the ensemble's and
/// each member's probabilities (graph outputs `probabilities`, `member_<name>`).
pub struct Model {
    plan: Arc<TypedRunnableModel>,
    width: usize,
    members: Vec<String>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("width", &self.width)
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Parse and optimise an ONNX file. The batch dimension stays symbolic, so
    /// one plan serves one row or a hundred.
    pub fn load(
        file: &str,
        onnx: &[u8],
        width: usize,
        members: &[String],
    ) -> Result<Self, ModelError> {
        let load = |reason: TractError| ModelError::Load {
            file: file.to_string(),
            reason: format!("{reason:#}"),
        };
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut &*onnx)
            .map_err(load)?;
        let batch = model.symbols.sym("N");
        model
            .set_input_fact(0, f32::fact([batch.to_dim(), width.to_dim()]).into())
            .map_err(load)?;
        let outputs: Vec<String> = std::iter::once(PROBABILITIES.to_string())
            .chain(members.iter().map(|m| format!("member_{m}")))
            .collect();
        model.select_outputs_by_name(&outputs).map_err(load)?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(load)?;
        Ok(Self {
            plan,
            width,
            members: members.to_vec(),
        })
    }

    /// Feature values per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// One run of the graph for all rows. Rows must have `width` finite values.
    pub fn predict(&self, rows: &[Vec<f64>]) -> Result<Vec<Forecast>, ModelError> {
        let mut input = Vec::with_capacity(rows.len() * self.width);
        for (row, values) in rows.iter().enumerate() {
            validate(row, values, self.width)?;
            input.extend(values.iter().map(|&v| v as f32));
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let run = |e: TractError| ModelError::Run(format!("{e:#}"));
        let tensor = Tensor::from_shape(&[rows.len(), self.width], &input).map_err(run)?;
        let outputs = self.plan.run(tvec!(tensor.into())).map_err(run)?;
        let columns = outputs
            .iter()
            .map(|t| t.to_plain_array_view::<f32>().map_err(run))
            .collect::<Result<Vec<_>, _>>()?;
        let up = |column: usize, row: usize| {
            columns[column]
                .get([row, 1])
                .map(|&p| f64::from(p))
                .ok_or_else(|| ModelError::Run(format!("output {column} has no row {row}")))
        };
        (0..rows.len())
            .map(|row| {
                Ok(Forecast {
                    probability_up: up(0, row)?,
                    members: self
                        .members
                        .iter()
                        .enumerate()
                        .map(|(i, name)| {
                            Ok(MemberVote {
                                name: name.clone(),
                                probability_up: up(i + 1, row)?,
                            })
                        })
                        .collect::<Result<_, ModelError>>()?,
                })
            })
            .collect()
    }
}

/// A row the model can take: `width` finite values.
pub fn validate(row: usize, values: &[f64], width: usize) -> Result<(), ModelError> {
    if values.len() != width {
        return Err(ModelError::InvalidFeatures {
            row,
            reason: format!("{} values, the model takes {width}", values.len()),
        });
    }
    // The graph computes in f32: 1e39 is finite here but not there.
    if let Some(i) = values.iter().position(|&v| !(v as f32).is_finite()) {
        return Err(ModelError::InvalidFeatures {
            row,
            reason: format!("value {i} is not a finite 32-bit number"),
        });
    }
    Ok(())
}
