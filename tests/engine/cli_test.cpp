// mechscope-cli run / inspect as processes (skipped when the CLI was not built in this tree).
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <memory>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/common/remove_tree.hpp"
#include "engine_test_support.hpp"

namespace fs = std::filesystem;

namespace {

struct Proc {
  int rc = -1;
  std::string out;
};

fs::path cliPath() {
#ifdef MECHSCOPE_BINARY_DIR
  return fs::path(MECHSCOPE_BINARY_DIR) / "bin" / "mechscope-cli";
#else
  return {};
#endif
}

// posix_spawn, not popen: no fork of a process that holds LibTorch's thread pools. (The SIGSEGV once
// blamed on popen here was std::filesystem::remove_all inside libtorch.so 2.x: core/common/remove_tree.hpp.)
Proc runCli(const std::string& args) {
  Proc p;
  const std::string cmd = cliPath().string() + " " + args + " 2>&1";
  int fds[2];
  if (::pipe(fds) != 0) return p;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  std::string shell = "/bin/sh", dashC = "-c", command = cmd;
  char* argv[] = {shell.data(), dashC.data(), command.data(), nullptr};
  pid_t pid = -1;
  const int err = ::posix_spawn(&pid, "/bin/sh", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (err != 0) {
    ::close(fds[0]);
    return p;
  }
  std::array<char, 4096> buf{};
  for (ssize_t n; (n = ::read(fds[0], buf.data(), buf.size())) > 0;) p.out.append(buf.data(), static_cast<size_t>(n));
  ::close(fds[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  p.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return p;
}

#define CLI_OR_SKIP() \
  if (!fs::exists(cliPath())) GTEST_SKIP() << "mechscope-cli not built at " << cliPath()

TEST(Cli, InspectListsConfigAndHooks) {
  CLI_OR_SKIP();
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "pythia");
  const Proc p = runCli("inspect --model " + dir.string());
  ASSERT_EQ(p.rc, 0) << p.out;
  EXPECT_NE(p.out.find("model_type: gpt_neox"), std::string::npos);
  EXPECT_NE(p.out.find("parallel_attn_mlp: true"), std::string::npos);
  EXPECT_NE(p.out.find("rotary_dim 4"), std::string::npos);  // 25 % of d_head 16
  EXPECT_NE(p.out.find("blocks.2.attn.hook_pattern"), std::string::npos);
  EXPECT_EQ(p.out.find("hook_resid_mid"), std::string::npos);  // parallel residual has none
}

TEST(Cli, RunTokenIdsPrintsTopK) {
  CLI_OR_SKIP();
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "gpt2");
  const fs::path d = mechscope::test::tempDir("cli");
  { std::ofstream(d / "ids.json") << "[[1, 2, 3, 4], [5, 6, 7, 8]]"; }
  const Proc p = runCli("run --model " + dir.string() + " --token-ids " + (d / "ids.json").string() + " --top-k 3");
  ASSERT_EQ(p.rc, 0) << p.out;
  EXPECT_NE(p.out.find("[1] 4 tokens; top-3 next tokens:"), std::string::npos) << p.out;
  // LibTorch 2.x takes the fused path when no attention hook is active; 1.13 has only explicit.
  EXPECT_TRUE(p.out.find("attention path: explicit") != std::string::npos ||
              p.out.find("attention path: fused") != std::string::npos)
      << p.out;
  // Bad inputs: exit 2 with a one-line error.
  { std::ofstream(d / "big.json") << "[[1, 2, 1000]]"; }
  Proc e = runCli("run --model " + dir.string() + " --token-ids " + (d / "big.json").string());
  EXPECT_EQ(e.rc, 2) << e.out;
  EXPECT_NE(e.out.find("token id 1000"), std::string::npos) << e.out;
  { std::ofstream(d / "ragged.json") << "[[1, 2, 3], [4]]"; }
  e = runCli("run --model " + dir.string() + " --token-ids " + (d / "ragged.json").string());
  EXPECT_EQ(e.rc, 2) << e.out;
  EXPECT_NE(e.out.find("equal length"), std::string::npos) << e.out;
  e = runCli("run --model " + dir.string() + " --token-ids " + (d / "ids.json").string() + " --hooks 'blocks.*.nope'");
  EXPECT_EQ(e.rc, 2) << e.out;
  EXPECT_NE(e.out.find("matches no hook point"), std::string::npos) << e.out;
  e = runCli("run --model " + dir.string() + " --prompt hello");
  EXPECT_EQ(e.rc, 2) << e.out;
  EXPECT_NE(e.out.find("no tokenizer.json"), std::string::npos) << e.out;
  e = runCli("run --model " + dir.string() + " --token-ids " + (d / "ids.json").string() + " --dtype fp16");
  EXPECT_EQ(e.rc, 2) << e.out;
  EXPECT_NE(e.out.find("fp16"), std::string::npos) << e.out;
  mechscope::removeTree(d);
}

TEST(Cli, RunWithCacheWritesFile) {
  CLI_OR_SKIP();
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "llama");
  const fs::path d = mechscope::test::tempDir("clicache");
  { std::ofstream(d / "ids.json") << "[[1, 2, 3, 4, 5]]"; }
  const Proc p = runCli("run --model " + dir.string() + " --token-ids " + (d / "ids.json").string() +
                        " --hooks 'blocks.*.attn.hook_pattern' --hooks blocks.0.hook_resid_pre --cache " + (d / "out.h5").string());
  if (p.rc == 2 && p.out.find("HDF5") != std::string::npos) GTEST_SKIP() << "built without the HDF5 store";
  ASSERT_EQ(p.rc, 0) << p.out;
  EXPECT_TRUE(fs::exists(d / "out.h5"));
  EXPECT_FALSE(fs::exists(d / "out.h5.partial"));
  EXPECT_GT(fs::file_size(d / "out.h5"), 5u * 1000 * 4);  // at least the logits [1, 5, 1000] fp32
  mechscope::removeTree(d);
}

TEST(Cli, PromptWithTokenizer) {
  CLI_OR_SKIP();
  MECHSCOPE_FIXTURE_OR_SKIP(dir, "gpt2");
  auto shared = mechscope::test::sharedDir();
  const fs::path tokJson = *shared / "fixtures" / "tokenizers" / "gpt2" / "tokenizer.json";
  if (!fs::exists(tokJson)) GTEST_SKIP() << "no gpt2 tokenizer fixture";
  const fs::path d = mechscope::test::tempDir("clitok");
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(dir / f, d / f);
  fs::copy_file(tokJson, d / "tokenizer.json");
  // "!" and "#" are ids 0 and 2 in GPT-2's vocabulary (inside the fixture's 1000-token vocabulary).
  Proc p = runCli("run --model " + d.string() + " --prompt '!' --prompt '#'");
  ASSERT_EQ(p.rc, 0) << p.out;
  EXPECT_NE(p.out.find("[1] 1 tokens"), std::string::npos) << p.out;
  // "!!" is one BPE token, id 3228: outside the fixture's vocabulary.
  p = runCli("run --model " + d.string() + " --prompt '!!'");
  EXPECT_EQ(p.rc, 2) << p.out;
  EXPECT_NE(p.out.find("token id 3228"), std::string::npos) << p.out;
  mechscope::removeTree(d);
}

}  // namespace
