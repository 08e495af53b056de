#include <gtest/gtest.h>

#include <QThread>

#include <atomic>
#include <chrono>
#include <thread>

#include "app/gui/job_runner.hpp"
#include "app_test_support.hpp"
#include "core/common/errors.hpp"

using namespace mechscope;
using namespace mechscope::gui;

TEST(JobRunner, DeliversOnTheGuiThreadAfterWorkOnOneOtherThread) {
  JobRunner jobs;
  gui::test::JobWatch watch(jobs);
  QThread* workThread1 = nullptr;
  QThread* workThread2 = nullptr;
  QThread* deliverThread = nullptr;
  int value = 0;
  const int a = jobs.submit("a", [&](const RunContext&) -> JobRunner::Deliver {
    workThread1 = QThread::currentThread();
    return [&] { deliverThread = QThread::currentThread(), value = 42; };
  });
  const int b = jobs.submit("b", [&](const RunContext&) -> JobRunner::Deliver {
    workThread2 = QThread::currentThread();
    return {};
  });
  EXPECT_EQ(watch.wait(a).status, "finished");
  EXPECT_EQ(watch.wait(b).status, "finished");
  EXPECT_EQ(value, 42);
  EXPECT_EQ(deliverThread, QThread::currentThread());
  EXPECT_NE(workThread1, QThread::currentThread());
  EXPECT_EQ(workThread1, workThread2) << "one compute lane: every job on the same thread";
  EXPECT_FALSE(jobs.busy());
}

TEST(JobRunner, ThrottlesProgressToTwentyHertzAndAlwaysSendsTheLast) {
  JobRunner jobs;
  gui::test::JobWatch watch(jobs);
  std::vector<std::pair<qint64, qint64>> seen;
  QObject::connect(&jobs, &JobRunner::progress, [&](int, qint64 d, qint64 t, const QString&) { seen.emplace_back(d, t); });
  const int id = jobs.submit("steps", [](const RunContext& ctx) -> JobRunner::Deliver {
    for (int i = 0; i <= 300; ++i) {  // 300 reports over ~0.6 s
      ctx.step(i, 300, "steps");
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return {};
  });
  ASSERT_EQ(watch.wait(id).status, "finished");
  QTest::qWait(20);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), std::make_pair(qint64{300}, qint64{300}));
  EXPECT_LT(seen.size(), 40u) << "progress must be throttled (≤ 20 Hz), got " << seen.size();
  EXPECT_GE(seen.size(), 3u);
}

TEST(JobRunner, CancelReallyStopsTheWork) {
  JobRunner jobs;
  gui::test::JobWatch watch(jobs);
  std::atomic<long> iterations{0};
  std::atomic<long> afterCancel{-1};
  const int id = jobs.submit("forever", [&](const RunContext& ctx) -> JobRunner::Deliver {
    for (;;) {
      ++iterations;
      ctx.step(iterations, 1000000000, "spinning");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  QTest::qWait(100);
  const long before = iterations.load();
  EXPECT_GT(before, 0);
  jobs.cancel(id);
  const auto end = watch.wait(id, 5000);
  EXPECT_EQ(end.status, "cancelled");
  const long stopped = iterations.load();
  QTest::qWait(50);
  EXPECT_EQ(iterations.load(), stopped) << "the worker kept running after Cancel";
  EXPECT_LE(stopped - before, 50) << "stopped at the next check";
  (void)afterCancel;
}

TEST(JobRunner, QueuedJobCancelledNeverRunsAndErrorsBecomeOneLineMessages) {
  JobRunner jobs;
  gui::test::JobWatch watch(jobs);
  std::atomic<bool> ran{false};
  const int slow = jobs.submit("slow", [](const RunContext&) -> JobRunner::Deliver {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return {};
  });
  const int queued = jobs.submit("queued", [&](const RunContext&) -> JobRunner::Deliver {
    ran = true;
    return {};
  });
  const int bad = jobs.submit("bad", [](const RunContext&) -> JobRunner::Deliver {
    throw InputError("model.safetensors: truncated header\nsecond line");
  });
  const int oom = jobs.submit("oom", [](const RunContext&) -> JobRunner::Deliver { throw std::bad_alloc(); });
  jobs.cancel(queued);
  EXPECT_EQ(watch.wait(slow).status, "finished");
  EXPECT_EQ(watch.wait(queued).status, "cancelled");
  EXPECT_FALSE(ran.load());
  const auto b = watch.wait(bad);
  EXPECT_EQ(b.status, "failed");
  EXPECT_EQ(b.message, "model.safetensors: truncated header");
  const auto o = watch.wait(oom);
  EXPECT_EQ(o.status, "failed");
  EXPECT_TRUE(o.message.startsWith("out of memory")) << o.message.toStdString();
}
