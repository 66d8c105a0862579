# One lme4 fit for benchmarks/peers.py (the "lme4" column), in a fresh R process:
#
#   Rscript --vanilla lme4_fit.R DATA.csv FORMULA FUNCTION FAMILY FACTORS
#
# FUNCTION is lmer (gaussian; REML = FALSE: maximum likelihood) or glmer (FAMILY binomial
# or poisson; Laplace approximation, nAGQ = 1). FACTORS: comma-separated columns to read
# as factors (group ids, text predictors). Prints tab-separated lines for peers.py:
# version, fit_s (seconds of the lmer/glmer call alone), fixef, varcorr (sd and cor
# estimates), warning. Exit status 3: lme4 is not installed.

args <- commandArgs(trailingOnly = TRUE)
if (!requireNamespace("lme4", quietly = TRUE)) quit(status = 3)
suppressPackageStartupMessages(library(lme4))

frame <- read.csv(args[1], stringsAsFactors = FALSE)
factors <- if (length(args) >= 5) strsplit(args[5], ",")[[1]] else character(0)
for (column in factors[factors != ""]) frame[[column]] <- factor(frame[[column]])
model_formula <- as.formula(args[2])

fit_model <- function() {
  if (args[3] == "lmer") {
    lmer(model_formula, data = frame, REML = FALSE)
  } else {
    glmer(model_formula, data = frame, family = args[4], nAGQ = 1)
  }
}

caught <- character(0)  # convergence warnings, kept for the row's note
seconds <- system.time(
  fit <- withCallingHandlers(fit_model(), warning = function(w) {
    caught <<- c(caught, conditionMessage(w))
    invokeRestart("muffleWarning")
  })
)[["elapsed"]]

cat(sprintf("version\t%s\t%s\n", R.version.string, as.character(packageVersion("lme4"))))
cat(sprintf("fit_s\t%.6f\n", seconds))
fixed <- fixef(fit)
cat(sprintf("fixef\t%s\t%.10g\n", names(fixed), fixed), sep = "")
vc <- as.data.frame(VarCorr(fit))  # grp, var1, var2 (NA for an sd), vcov, sdcor
cat(sprintf("varcorr\t%s\t%s\t%s\t%.10g\n", vc$grp, vc$var1, vc$var2, vc$sdcor), sep = "")
cat(sprintf("warning\t%s\n", gsub("[\t\n]", " ", caught)), sep = "")
