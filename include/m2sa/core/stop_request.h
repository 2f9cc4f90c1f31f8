#pragma once
// Graceful stop on SIGTERM / SIGINT (Slurm preemption and time limits, Ctrl-C): the first signal only records a
// request, which long-running loops poll at safe points (the trainer: at the end of a step, agreed by every rank,
// then a checkpoint). The handler also restores the default action of both signals, so a second signal ends the
// process at once; what is on disk then is still consistent, because every checkpoint and output is written to a
// temp name and renamed into place.
namespace m2sa {

// The exit status of a process that stopped on request after saving its state (`m2sa train`: the checkpoint of the
// step it finished; `--resume` continues). EX_TEMPFAIL from sysexits.h: "try again later".
constexpr int kExitStopped = 75;

// Installs the handlers (idempotent). `message` (a string literal: it is written from the signal handler) replaces
// the trainer's "finishing the current step and writing a checkpoint" line that the first signal prints.
void install_stop_handlers(const char* message = nullptr);
// The signal that requested a stop, 0 if none.
int stop_signal();
inline bool stop_requested() { return stop_signal() != 0; }

}  // namespace m2sa
