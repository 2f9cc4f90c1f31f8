#include "m2sa/core/read_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "m2sa/core/error.h"

namespace m2sa {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) fail(path.string(), ": does not exist");
    fail(path.string(), ": cannot open: ", std::strerror(errno));
  }
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) fail(path.string(), ": read failed");
  return s.str();
}

}  // namespace m2sa
