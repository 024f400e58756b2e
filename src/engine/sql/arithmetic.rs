//! Integer arithmetic that fails on overflow, as PostgreSQL's does.
//!
//! DataFusion adds, subtracts, multiplies and negates integers with wrapping
//! kernels: `9223372036854775807 + 1` is `-9223372036854775808`. An analyzer
//! rule, run after type coercion and before any constant folding, replaces
//! each such operation on integers with a function that uses Arrow's checked
//! kernels and fails with 22003 (`bigint out of range`) instead:
//!
//! ```text
//!   a + b    (a, b: int8)  ->  omen_checked_add(a, b) AS "a + b"
//!   -a       (a: int4)     ->  omen_checked_neg(a)    AS "(- a)"
//! ```
//!
//! `sum` of bigints adds them as numeric (NUMERIC(38, 0)), as PostgreSQL's
//! does, rather than in 64 bits, and `avg` of a numeric keeps 16 decimals
//! or more (DataFusion's keeps four more than its argument has). Names are kept, so result columns read as
//! before. Other types (floats, numerics, dates and intervals) keep
//! DataFusion's own operators.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType as ArrowType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::analyzer::type_coercion::TypeCoercion;
use datafusion::optimizer::AnalyzerRule;

use crate::engine::error::{Error, SqlState};

/// The analyzer rule; see the module docs.
#[derive(Debug)]
pub struct CheckedArithmetic {
    functions: Functions,
}

impl CheckedArithmetic {
    /// The rule, with its functions made once.
    pub fn new() -> CheckedArithmetic {
        CheckedArithmetic {
            functions: Functions::new(),
        }
    }
}

impl AnalyzerRule for CheckedArithmetic {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> DfResult<LogicalPlan> {
        let summed = std::cell::Cell::new(false);
        let plan = plan
            .transform_up_with_subqueries(|plan| {
                let mut schema = merge_schema(&plan.inputs());
                if plan.inputs().is_empty() {
                    schema.merge(plan.schema());
                }
                let names = NamePreserver::new(&plan);
                let rewritten = plan.map_expressions(|expr| {
                    let name = names.save(&expr);
                    expr.transform_up(|e| self.functions.rewrite(e, &schema, &summed))
                        .map(|t| t.update_data(|e| name.restore(e)))
                })?;
                // A sum's type changes (bigint to numeric), so do its parents'.
                rewritten.map_data(|plan| plan.recompute_schema())
            })?
            .data;
        // What surrounds a sum made numeric (a comparison in HAVING, an
        // addition) is coerced to the new type; only then.
        if summed.get() {
            return TypeCoercion::new().analyze(plan, config);
        }
        Ok(plan)
    }

    fn name(&self) -> &str {
        "omen_checked_arithmetic"
    }
}

/// The checked functions.
#[derive(Debug)]
struct Functions {
    add: Arc<ScalarUDF>,
    sub: Arc<ScalarUDF>,
    mul: Arc<ScalarUDF>,
    neg: Arc<ScalarUDF>,
}

impl Functions {
    fn new() -> Functions {
        let udf = |op| Arc::new(ScalarUDF::from(Checked::new(op)));
        Functions {
            add: udf(Op::Add),
            sub: udf(Op::Sub),
            mul: udf(Op::Mul),
            neg: udf(Op::Neg),
        }
    }

    /// `expr` with its integer arithmetic checked; `summed` is set when a
    /// bigint sum became numeric.
    fn rewrite(
        &self,
        expr: Expr,
        schema: &DFSchema,
        summed: &std::cell::Cell<bool>,
    ) -> DfResult<Transformed<Expr>> {
        let is_integer = |e: &Expr| {
            e.get_type(schema)
                .is_ok_and(|t| matches!(t, ArrowType::Int16 | ArrowType::Int32 | ArrowType::Int64))
        };
        let call = |udf: &Arc<ScalarUDF>, args| {
            Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                udf.clone(),
                args,
            )))
        };
        Ok(match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right })
                if matches!(op, Operator::Plus | Operator::Minus | Operator::Multiply)
                    && is_integer(&left)
                    && is_integer(&right)
                    && left.get_type(schema).ok() == right.get_type(schema).ok() =>
            {
                let udf = match op {
                    Operator::Plus => &self.add,
                    Operator::Minus => &self.sub,
                    _ => &self.mul,
                };
                call(udf, vec![*left, *right])
            }
            Expr::Negative(inner) if is_integer(&inner) => call(&self.neg, vec![*inner]),
            // PostgreSQL sums bigints as numeric, which cannot overflow.
            Expr::AggregateFunction(mut aggregate)
                if aggregate.func.name() == "sum"
                    && aggregate.params.args.len() == 1
                    && aggregate.params.args[0].get_type(schema).ok() == Some(ArrowType::Int64) =>
            {
                let arg = aggregate.params.args.remove(0);
                let numeric = ArrowType::Decimal128(38, 0);
                aggregate.params.args.push(arg.cast_to(&numeric, schema)?);
                summed.set(true);
                Transformed::yes(Expr::AggregateFunction(aggregate))
            }
            // PostgreSQL averages numerics to at least 16 significant
            // digits; DataFusion adds four decimals to the argument's. The
            // argument gets more decimals first, as many as leave room for
            // its integer digits and a sum of 10^10 rows.
            Expr::AggregateFunction(mut aggregate)
                if aggregate.func.name() == "avg" && aggregate.params.args.len() == 1 =>
            {
                let wider = match aggregate.params.args[0].get_type(schema) {
                    Ok(ArrowType::Decimal128(p, s)) => {
                        let integer = i16::from(p) - i16::from(s);
                        let scale = (38 - integer - 10).min(16);
                        (scale > i16::from(s)).then_some(ArrowType::Decimal128(38, scale as i8))
                    }
                    _ => None,
                };
                match wider {
                    Some(wider) => {
                        let arg = aggregate.params.args.remove(0);
                        aggregate.params.args.push(arg.cast_to(&wider, schema)?);
                        summed.set(true);
                        Transformed::yes(Expr::AggregateFunction(aggregate))
                    }
                    None => Transformed::no(Expr::AggregateFunction(aggregate)),
                }
            }
            other => Transformed::no(other),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Sub,
    Mul,
    Neg,
}

/// One checked integer operation as a scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Checked {
    op: Op,
    signature: Signature,
}

impl Checked {
    fn new(op: Op) -> Checked {
        let arity = if op == Op::Neg { 1 } else { 2 };
        Checked {
            op,
            signature: Signature::any(arity, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        match self.op {
            Op::Add => "omen_checked_add",
            Op::Sub => "omen_checked_sub",
            Op::Mul => "omen_checked_mul",
            Op::Neg => "omen_checked_neg",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[ArrowType]) -> DfResult<ArrowType> {
        Ok(args[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let result: ArrayRef = match self.op {
            Op::Add => numeric::add(&arrays[0], &arrays[1]),
            Op::Sub => numeric::sub(&arrays[0], &arrays[1]),
            Op::Mul => numeric::mul(&arrays[0], &arrays[1]),
            Op::Neg => numeric::neg(&arrays[0]),
        }
        .map_err(|_| out_of_range(arrays[0].data_type()))?;
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &result, 0,
            )?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

/// PostgreSQL's error for an integer result out of its type's range.
fn out_of_range(t: &ArrowType) -> DataFusionError {
    let name = match t {
        ArrowType::Int16 => "smallint",
        ArrowType::Int32 => "integer",
        _ => "bigint",
    };
    DataFusionError::External(Box::new(Error::invalid(
        SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
        format!("{name} out of range"),
    )))
}
