// Subcommands of the `llava` executable. Each lives in its own cmd_<name>.c.
#ifndef LLAVA_APP_COMMANDS_H
#define LLAVA_APP_COMMANDS_H

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);  // argv[0] is the subcommand name
    const char *usage;                  // one line: arguments
    const char *summary;                // one line: what it does
} llava_command;

int cmd_inspect(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_image(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_bench_step(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_bench_generate(int argc, char **argv);
int cmd_bench_kernels(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_prep(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_sweep(int argc, char **argv);

#endif
