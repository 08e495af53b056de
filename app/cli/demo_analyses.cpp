#include "app/cli/demo_analyses.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iostream>

#include <fmt/format.h>

#include "analysis/common/registry.hpp"
#include "core/synth/planted_tasks.hpp"

extern char** environ;

namespace mechscope::cli {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

std::string text(const std::vector<std::string>& words) {
  std::string s;
  for (const auto& w : words) s += (s.empty() ? "" : " ") + w;
  return s;
}

void writeIds(const fs::path& path, const std::vector<int64_t>& ids) { std::ofstream(path) << json::array({ids}).dump(); }

void writeTasks(const fs::path& path, const std::vector<planted::TaskPrompt>& prompts) {
  std::ofstream out(path);
  for (const auto& p : prompts)
    out << json{{"clean", text(p.words)}, {"corrupted", text(p.corrupted)}, {"answer", p.answer}, {"incorrect", p.incorrect}}
               .dump()
        << '\n';
}

/// Runs this executable with `args` (posix_spawn: no fork handlers of LibTorch run), output to `log`.
int runSelf(const std::vector<std::string>& args, const fs::path& log) {
  std::vector<std::string> argv{"/proc/self/exe"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = -1;
  const int err = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

json runDemoAnalyses(const fs::path& plantedFolder, const fs::path& out, const RunContext& ctx) {
  const fs::path dir = out / "analyses";
  fs::create_directories(dir);
  const std::string model = plantedFolder.string();
  // Inputs in the planted vocabulary (docs/planted-models.md), each with a known answer.
  auto sinkText = planted::idleText();
  sinkText.insert(sinkText.begin() + 5, ";");
  writeIds(dir / "sink_text.json", planted::toIds(sinkText));
  writeIds(dir / "idle_text.json", planted::toIds(planted::idleText()));
  const auto ioi = planted::ioiPrompts(8, 1), co = planted::coloredObjectsPrompts(8, 2);
  writeIds(dir / "ioi_prompt.json", planted::toIds(ioi[0].words));
  const auto needle = planted::needlePrompt(60, 0.5, 3);
  writeIds(dir / "needle.json", planted::toIds(needle.words));
  // One template per file so every prompt has the same length.
  std::vector<planted::TaskPrompt> ioiSame;
  for (const auto& p : planted::ioiPrompts(64, 4))
    if (p.templateId == 0 && ioiSame.size() < 8) ioiSame.push_back(p);
  writeTasks(dir / "ioi.jsonl", ioiSame);
  writeTasks(dir / "colored_objects.jsonl", co);

  const std::string j = (dir / "").string();
  std::vector<std::pair<std::string, std::vector<std::string>>> runs = {
      {"sinks", {"sinks", "--model", model, "--token-ids", j + "sink_text.json", "--json", j + "sinks.json"}},
      {"waad-fai", {"waad-fai", "--model", model, "--token-ids", j + "idle_text.json", "--json", j + "waad-fai.json"}},
      {"constraint-attention",
       {"constraint-attention", "--model", model, "--token-ids", j + "ioi_prompt.json", "--constraint-tokens", "2:3",
        "--json", j + "constraint-attention.json"}},
      {"retrieval",
       {"retrieval", "--model", model, "--token-ids", j + "needle.json", "--needle-span",
        fmt::format("{}:{}", needle.needleStart, needle.needleEnd), "--max-new-tokens",
        std::to_string(needle.answer.size()), "--no-success-filter", "--json", j + "retrieval.json"}},
      {"circuit", {"circuit", "--model", model, "--task", j + "ioi.jsonl", "--json", j + "circuit_ioi.json"}},
      {"circuit", {"circuit", "--model", model, "--task", j + "colored_objects.jsonl", "--json", j + "circuit_co.json"}},
      {"overlap", {"overlap", j + "circuit_ioi.json", j + "circuit_co.json", "--json", j + "overlap.json"}},
  };
  // Every other plugin on token rows, with its table's example options (on the sink text; dataset plugins on
  // ioi.jsonl). Those with an example run above (a needle test, circuit files) are not run again.
  for (const auto& a : analysis::analysisRegistry()) {
    if (!a.plugin || std::any_of(runs.begin(), runs.end(), [&](const auto& r) { return r.first == a.name; })) continue;
    const bool dataset = std::find(a.acceptsKinds.begin(), a.acceptsKinds.end(), "prompts") == a.acceptsKinds.end();
    std::vector<std::string> args{a.name, "--model", model};
    for (const std::string& s : dataset ? std::vector<std::string>{"--dataset", j + "ioi.jsonl"}
                                        : std::vector<std::string>{"--token-ids", j + "sink_text.json"})
      args.push_back(s);
    args.insert(args.end(), a.exampleArgs.begin(), a.exampleArgs.end());
    args.insert(args.end(), {"--json", j + a.name + ".json"});
    runs.emplace_back(a.name, std::move(args));
  }
  json ran = json::array();
  for (const auto& [name, args] : runs) {
    ctx.check();
    const auto info = std::find_if(analysis::analysisRegistry().begin(), analysis::analysisRegistry().end(),
                                   [&](const auto& a) { return a.name == name; });
    if (info == analysis::analysisRegistry().end() || !info->available) {
      std::cerr << "demo: analysis '" << name << "' is not built yet — skipped\n";
      ran.push_back({{"analysis", name}, {"status", "not built yet"}});
      continue;
    }
    const fs::path log = dir / (fs::path(args.back()).stem().string() + ".log");
    std::cerr << "demo: running " << name << "\n";
    const int rc = runSelf(args, log);
    ran.push_back({{"analysis", name}, {"status", rc == 0 ? "ok" : fmt::format("failed (exit {})", rc)},
                   {"json", fs::path(args.back()).filename().string()}, {"log", log.filename().string()}});
    if (rc != 0) std::cerr << fmt::format("demo: {} failed (exit {}); see {}\n", name, rc, log.string());
  }
  return ran;
}

}  // namespace mechscope::cli
