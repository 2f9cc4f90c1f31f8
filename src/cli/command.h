#pragma once
// Subcommands register themselves (one file each); main.cpp only dispatches.
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace m2sa::cli {

struct Command {
  std::string name;
  std::string description;
  // Adds the subcommand's flags to `app` and returns the function that runs it (its exit code).
  std::function<std::function<int()>(CLI::App& app)> setup;
};

std::vector<Command>& commands();

struct Registrar {
  explicit Registrar(Command c) { commands().push_back(std::move(c)); }
};

}  // namespace m2sa::cli
