// m2sa report RUN_DIR [--eval REPORT.json]... [--infer DIR]... [--out FILE]: one self-contained HTML page about a
// run (report/run_report.h); `m2sa train` writes it at the end of a run too.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "command.h"
#include "m2sa/report/run_report.h"

namespace m2sa::cli {
namespace {

struct ReportArgs {
  std::string run_dir, out;
  std::vector<std::string> evals, infers;
};

Registrar register_report({"report", "Write one self-contained HTML page about a run: curves, config, eval tables, "
                                     "mask gallery",
                           [](CLI::App& app) {
                             auto a = std::make_shared<ReportArgs>();
                             app.add_option("run_dir", a->run_dir,
                                            "run folder (metrics.jsonl, train_config.json, previews/, eval/*.json)")
                                 ->required();
                             app.add_option("--eval", a->evals, "more `m2sa eval` report files (repeatable)");
                             app.add_option("--infer", a->infers,
                                            "`m2sa infer --out` folders, or folders of them (repeatable)");
                             app.add_option("--out", a->out, "the page (default RUN_DIR/report.html)");
                             return [a]() -> int {
                               report::ReportInputs in;
                               in.run_dir = a->run_dir;
                               in.eval_reports.assign(a->evals.begin(), a->evals.end());
                               in.infer_dirs.assign(a->infers.begin(), a->infers.end());
                               std::cout << "report: " << report::write_run_report(in, a->out).string() << "\n";
                               return 0;
                             };
                           }});

}  // namespace
}  // namespace m2sa::cli
