#include "m2sa/core/stop_request.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace m2sa {

namespace {
std::atomic<int> g_stop_signal{0};
constexpr const char* kDefaultStopMessage =
    "\nm2sa: stop requested; finishing the current step and writing a checkpoint (a second signal ends at once)\n";
std::atomic<const char*> g_stop_message{kDefaultStopMessage};

void on_stop_signal(int sig) {
  // Only async-signal-safe calls here.
  g_stop_signal.store(sig);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigemptyset(&dfl.sa_mask);
  ::sigaction(SIGTERM, &dfl, nullptr);
  ::sigaction(SIGINT, &dfl, nullptr);
  const char* msg = g_stop_message.load();
  [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, msg, ::strlen(msg));
}
}  // namespace

void install_stop_handlers(const char* message) {
  if (message != nullptr) g_stop_message.store(message);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  ::sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // reads and writes in flight go on; the request is polled
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
}

int stop_signal() { return g_stop_signal.load(); }

}  // namespace m2sa
