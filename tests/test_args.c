// app/args.c: the distance and the nearest-flag suggestion every command's argument loop uses.
#include "app/args.h"
#include "check.h"

int main(void) {
    CHECK_EQ_INT(args_distance("", ""), 0);
    CHECK_EQ_INT(args_distance("abc", ""), 3);
    CHECK_EQ_INT(args_distance("kitten", "sitting"), 3);
    CHECK_EQ_INT(args_distance("--resume", "--resume"), 0);
    CHECK_EQ_INT(args_distance("--reusme", "--resume"), 1);  // neighbours swapped: one edit
    CHECK_EQ_INT(args_distance("--rsume", "--resume"), 1);
    CHECK_EQ_INT(args_distance("--resumee", "--resume"), 1);
    CHECK_EQ_INT(args_distance("--rezoom", "--resume"), 4);
    static const char *const train[] = {"--set", "--resume", "--quiet", "--stop-after", "--help"};
    const char *s = args_suggest("--reusme", train, ARGS_COUNT(train));
    CHECK(s && !strcmp(s, "--resume"), "--reusme -> %s", s ? s : "(none)");
    s = args_suggest("--sett", train, ARGS_COUNT(train));
    CHECK(s && !strcmp(s, "--set"), "--sett -> %s", s ? s : "(none)");
    s = args_suggest("--stop_after", train, ARGS_COUNT(train));
    CHECK(s && !strcmp(s, "--stop-after"), "--stop_after -> %s", s ? s : "(none)");
    s = args_suggest("--resume=1", train, ARGS_COUNT(train));  // the value given inline is not compared
    CHECK(s == NULL, "--resume=1 is the flag itself: no suggestion, got %s", s ? s : "(none)");
    s = args_suggest("--lr", train, ARGS_COUNT(train));  // 3 edits from --set: too far
    CHECK(s == NULL, "--lr -> %s", s ? s : "(none)");
    s = args_suggest("--frobnicate", train, ARGS_COUNT(train));
    CHECK(s == NULL, "--frobnicate -> %s", s ? s : "(none)");
    // Equal distances: the first known flag in the list's order.
    static const char *const gen[] = {"--model", "--mode"};
    s = args_suggest("--modle", gen, ARGS_COUNT(gen));
    CHECK(s && !strcmp(s, "--model"), "--modle -> %s", s ? s : "(none)");
    CHECK(args_is_help("--help") && args_is_help("-h") && !args_is_help("--helpme") && !args_is_help(NULL),
          "args_is_help");
    return check_done();
}
