/// Why a schedule expression was rejected.
///
/// The `Display` text names the expression, says exactly what is wrong and shows a valid
/// expression to copy, e.g.
/// `cron(0 12 * * * *): day-of-month and day-of-week cannot both be `*`; use `?` in one of them, e.g. cron(0 12 * * ? *)`.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    /// Neither `rate(...)` nor `cron(...)`.
    #[error(
        "{expr:?} is not a schedule expression; write rate(VALUE UNIT) or \
         cron(MINUTES HOURS DAY-OF-MONTH MONTH DAY-OF-WEEK YEAR), e.g. rate(5 minutes) or cron(0 12 * * ? *)"
    )]
    NotAnExpression {
        /// The text as given (trimmed).
        expr: String,
    },
    /// A `rate(...)` expression that AWS (or Tusk) would not accept.
    #[error("{expr}: {problem}")]
    InvalidRate {
        /// The expression as given (trimmed).
        expr: String,
        /// What is wrong, with a valid example.
        problem: String,
    },
    /// A `cron(...)` expression that AWS would not accept.
    #[error("{expr}: {problem}")]
    InvalidCron {
        /// The expression as given (trimmed).
        expr: String,
        /// What is wrong, with a valid example.
        problem: String,
    },
}
