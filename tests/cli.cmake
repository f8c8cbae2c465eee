# Tests that run the `llava` executable and check what it prints.
add_test(NAME cli_help COMMAND llava help)
set_tests_properties(cli_help PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "inspect.*config.*train.*demo")

# Every command answers --help with its usage (each flag with its default) and exit status 0, and
# `llava help COMMAND` prints the same. The commands are read from app/main.c's COMMANDS table, so a
# command added there is tested too.
file(STRINGS ${CMAKE_SOURCE_DIR}/app/main.c llava_command_lines REGEX "^ *{\"[a-z0-9-]+\", cmd_")
set(llava_commands "")
foreach(line ${llava_command_lines})
  string(REGEX REPLACE "^ *{\"([a-z0-9-]+)\".*" "\\1" name "${line}")
  list(APPEND llava_commands ${name})
endforeach()
foreach(cmd ${llava_commands})
  add_test(NAME cli_help_${cmd} COMMAND llava ${cmd} --help)
  add_test(NAME cli_help_cmd_${cmd} COMMAND llava help ${cmd})
  set_tests_properties(cli_help_${cmd} cli_help_cmd_${cmd} PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "usage")
endforeach()
# --help anywhere in the arguments, after a preset or a path too.
foreach(cmd train config plan inspect plot sweep)
  add_test(NAME cli_help_late_${cmd} COMMAND llava ${cmd} x.json --help)
  set_tests_properties(cli_help_late_${cmd} PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "usage: llava ${cmd}")
endforeach()
# The usage lists every flag with its default.
add_test(NAME cli_help_train_flags COMMAND llava train --help)
set_tests_properties(cli_help_train_flags PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "--set key=value.*default: none.*--resume.*default: off.*--quiet.*--stop-after N.*default 0")
# A misspelled flag names the nearest known one (app/args.c), before any file is read.
foreach(t "train:x.json --reusme:--resume" "generate:--model x --prompt hi --temprature 0:--temperature"
          "eval:--model x --benchmrak gqa:--benchmark" "generate:--modle x:--model" "plan:x.json --wrold 2:--world"
          "config:x.json --sett a=1:--set" "serve:--prot 0:--port" "forward:--inptus x:--inputs"
          "sweep:x.json --dry-rn:--dry-run")
  string(REPLACE ":" ";" parts "${t}")
  list(GET parts 0 cmd)
  list(GET parts 1 args)
  list(GET parts 2 want)
  separate_arguments(args)
  string(REGEX REPLACE "[^a-z]" "" tag "${cmd}_${want}")
  add_test(NAME cli_suggest_${tag} COMMAND llava ${cmd} ${args})
  set_tests_properties(cli_suggest_${tag} PROPERTIES LABELS cpu
                       PASS_REGULAR_EXPRESSION "unknown argument; did you mean ${want}\\?")
endforeach()
add_test(NAME cli_suggest_exit_status COMMAND llava train x.json --reusme)
set_tests_properties(cli_suggest_exit_status PROPERTIES LABELS cpu WILL_FAIL TRUE)

add_test(NAME cli_unknown_command COMMAND llava frobnicate)
set_tests_properties(cli_unknown_command PROPERTIES LABELS cpu WILL_FAIL TRUE)

add_test(NAME cli_inspect_vicuna7b COMMAND llava inspect tests/data/hf/vicuna-7b-v1.5/config.json
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_inspect_vicuna7b PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "lm +6,738,415,616")

add_test(NAME cli_inspect_clip336 COMMAND llava inspect tests/data/hf/clip-vit-large-patch14-336
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_inspect_clip336 PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "vision +303,507,456")

add_test(NAME cli_inspect_llava7b COMMAND llava inspect tests/data/hf/llava-1.5-7b-hf
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_inspect_llava7b PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "projector +20,979,712")

add_test(NAME cli_inspect_missing COMMAND llava inspect tests/data/hf/no-such-model
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_inspect_missing PROPERTIES LABELS cpu WILL_FAIL TRUE)

# A SigLIP tower end to end: the demo with a SigLIP-shaped tower and SigLIP's image processor trains both stages
# and answers held-out questions through llava eval: at least 0.80 with the image (0.860 measured; CLIP's demo
# 1.000), blind below 0.40 (chance 0.29).
add_test(NAME demo_fast_siglip COMMAND llava demo --fast --vision siglip --out ${CMAKE_BINARY_DIR}/demo-fast-siglip)
set_tests_properties(demo_fast_siglip PROPERTIES LABELS "cpu;demo;long" TIMEOUT 900
                     PASS_REGULAR_EXPRESSION "accuracy_with_image=(0\\.[89][0-9]*|1\\.000) accuracy_blind=0\\.[0-3]")
add_test(NAME cli_forward_siglip
         COMMAND llava forward --model tests/data/golden/model/siglip_full/model
                 --inputs tests/data/golden/model/siglip_full/inputs.safetensors --out ${CMAKE_BINARY_DIR}/siglip-fwd.safetensors
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
# transformers' loss on these inputs is 5.45555782 (the golden's): ours agrees to 1e-6 relative.
set_tests_properties(cli_forward_siglip PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "loss 5\\.45555[78][0-9]* over 22 targets, 86 tokens, 2 images")

# The GGUF export refuses a tokenizer.json model by name before loading or writing anything.
add_test(NAME cli_export_gguf_bpe
         COMMAND llava export --format gguf --model tests/data/hf/no-such-model --out ${CMAKE_BINARY_DIR}/gguf-bpe
                 --tokenizer tests/data/bpe/qwen2/tokenizer.json
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_export_gguf_bpe PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "qwen2/tokenizer.json is a tokenizer.json \\(byte-level BPE\\).*not yet")

add_test(NAME cli_config_stage2 COMMAND llava config configs/llava15-7b-stage2.json --set train.learning_rate=3e-5
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_config_stage2 PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "\"learning_rate\":[ \t]*3e-05")

add_test(NAME cli_config_typo COMMAND llava config configs/llava15-7b-stage2.json --set train.lr=1
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_config_typo PROPERTIES LABELS cpu WILL_FAIL TRUE)
# A value is read whole: "1,000" is an error naming the key and the text, never 1.
add_test(NAME cli_config_trailing_garbage
         COMMAND llava config configs/llava15-7b-stage2.json --set train.max_steps=1,000
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_config_trailing_garbage PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "--set train\\.max_steps: cannot read \"1,000\" as an integer")


# llava forward on a folder written by transformers' save_pretrained, without conversion.
# 6.3803539 is the loss transformers computed on these inputs (tests/data/golden/model/README.md).
add_test(NAME cli_forward_tiny64
         COMMAND llava forward --model tests/data/golden/model/tiny64/model
                 --inputs tests/data/golden/model/tiny64/inputs.safetensors
                 --out ${CMAKE_BINARY_DIR}/forward_tiny64.safetensors --grads projector+lm
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_forward_tiny64 PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "loss 6\\.38035[3-4]")

# The tower trainable from the command line: its last used layer and the projector (abl_avgpool: transformers'
# loss 5.4906354, tests/data/golden/model/abl_avgpool/vision_grads.json); the file then holds the layer's gradients
# under transformers' names (grep counts encoder.layers.1's 16 tensors, and none of layer 0 or 2).
add_test(NAME cli_forward_vision_grads
         COMMAND sh -c "'$<TARGET_FILE:llava>' forward --model tests/data/golden/model/abl_avgpool/model --inputs tests/data/golden/model/abl_avgpool/inputs.safetensors --out '${CMAKE_BINARY_DIR}/forward_vision.safetensors' --grads vision1+projector && echo layer1 $(grep -ao 'grad.vision_tower.vision_model.encoder.layers.1[.][a-z_0-9.]*' '${CMAKE_BINARY_DIR}/forward_vision.safetensors' | sort -u | wc -l) others $(grep -aoc 'encoder.layers.[02][.]' '${CMAKE_BINARY_DIR}/forward_vision.safetensors')"
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_forward_vision_grads PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "loss 5\\.49063[5-6].*layer1 16 others 0")

# The grouped-query golden model (4 query heads over 2 key/value heads): transformers' loss 6.1331811.
add_test(NAME cli_forward_tinygqa
         COMMAND llava forward --model tests/data/golden/model/tinygqa/model
                 --inputs tests/data/golden/model/tinygqa/inputs.safetensors
                 --out ${CMAKE_BINARY_DIR}/forward_tinygqa.safetensors
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_forward_tinygqa PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "loss 6\\.13318[0-2]")

# The end-to-end test: the demo's whole recipe (prep, stage 1, stage 2, held-out evaluation) must
# reach its targets: accuracy_with_image >= 0.90 and accuracy_blind <= chance + 0.10.
add_test(NAME demo_fast COMMAND llava demo --fast --check --out ${CMAKE_BINARY_DIR}/demo-fast)
# --check makes the exit status the verdict (a pass regex would override it).
set_tests_properties(demo_fast PROPERTIES LABELS "cpu;demo" TIMEOUT 900)
set_tests_properties(demo_fast PROPERTIES FIXTURES_SETUP demo_model)
# The same recipe with the other language-model families at the demo's size (Llama-3.1's rope scaling,
# Qwen2's biases and tied head, Mistral's sliding window): each reaches the demo's targets. Not run
# again under the sanitizers (label long).
# The demo with the vision tower trained in stage 2 (all of it, with its embeddings, at a fifth of the LM's rate):
# the same targets.
add_test(NAME demo_fast_train_vision
         COMMAND llava demo --fast --check --train-vision all --out ${CMAKE_BINARY_DIR}/demo-fast-train-vision)
set_tests_properties(demo_fast_train_vision PROPERTIES LABELS "cpu;demo;long" TIMEOUT 900)
# AnyRes (LLaVA-NeXT's high resolution): one image into its tiles, as LlavaNextImageProcessor makes them
# (tests/test_image_anyres.c checks the pixels against transformers 4.46.3 and LLaVA-NeXT's own code).
add_test(NAME cli_image_anyres
         COMMAND llava image --aspect anyres --size 28 --grid-pinpoints "[[28,56],[56,28],[56,56]]"
                 tests/data/images/anyres/src/wide3x1.png --out ${CMAKE_BINARY_DIR}/cli_image_anyres.safetensors
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_image_anyres PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "300x100 -> anyres \\(hf\\) at 56x28 \\(width x height\\), 3 tiles of 28x28")

# Several images per sample (LLaVA-NeXT's "image" lists) trained end to end: two-image questions (the colour of the
# shape in the first or the second image) that need both images in order, besides the usual ones; --check holds them
# alone to 0.90 too (measured 1.00, blind 0.14, chance 0.25).
add_test(NAME demo_fast_multi_image
         COMMAND llava demo --fast --check --multi-image --out ${CMAKE_BINARY_DIR}/demo-fast-multi-image)
set_tests_properties(demo_fast_multi_image PROPERTIES LABELS "cpu;demo;long" TIMEOUT 900)
# LLaVA-NeXT's AnyRes through the whole demo: each 48-pixel image as 3 tiles and 78 merged features with image_newline,
# both stages, the held-out questions through the engine's AnyRes prompt (measured 1.000 with the image, 0.200 blind).
add_test(NAME demo_fast_anyres COMMAND llava demo --fast --check --anyres --out ${CMAKE_BINARY_DIR}/demo-fast-anyres)
set_tests_properties(demo_fast_anyres PROPERTIES LABELS "cpu;demo;long" TIMEOUT 900)
add_test(NAME cli_demo_bad_train_vision COMMAND llava demo --train-vision 0 --out ${CMAKE_BINARY_DIR}/demo-bad-tv)
set_tests_properties(cli_demo_bad_train_vision PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "--train-vision 0: all, or a number of layers from 1")
foreach(lm llama3 qwen2 mistral)
  add_test(NAME demo_fast_${lm} COMMAND llava demo --fast --check --lm ${lm} --out ${CMAKE_BINARY_DIR}/demo-fast-${lm})
  set_tests_properties(demo_fast_${lm} PROPERTIES LABELS "cpu;demo;long" TIMEOUT 900)
endforeach()
# `llava generate` on the demo's trained model: LLaVA's prompt, the image, greedy decoding. Held-out
# image 0 is yellow and held-out image 1 a square (the demo's data are deterministic).
foreach(q "color:What color is the shape?:yellow" "shape:What is the shape?:square")
  string(REPLACE ":" ";" parts "${q}")
  list(GET parts 0 name)
  list(GET parts 1 question)
  list(GET parts 2 answer)
  add_test(NAME cli_generate_${name}
           COMMAND llava generate --model ${CMAKE_BINARY_DIR}/demo-fast/checkpoints/stage2/model
                   --tokenizer ${CMAKE_BINARY_DIR}/demo-fast/tokenizer.model --max-new-tokens 8
                   --image ${CMAKE_BINARY_DIR}/demo-fast/data/images/eval_0000$<IF:$<STREQUAL:${name},color>,0,1>.png
                   --prompt "${question}")
  set_tests_properties(cli_generate_${name} PROPERTIES LABELS cpu FIXTURES_REQUIRED demo_model
                       PASS_REGULAR_EXPRESSION "^${answer}\n")
endforeach()

# --json: the answer with its counts and timing.
add_test(NAME cli_generate_json
         COMMAND llava generate --model ${CMAKE_BINARY_DIR}/demo-fast/checkpoints/stage2/model
                 --tokenizer ${CMAKE_BINARY_DIR}/demo-fast/tokenizer.model --json
                 --image ${CMAKE_BINARY_DIR}/demo-fast/data/images/eval_00000.png --prompt "What color is the shape?")
set_tests_properties(cli_generate_json PROPERTIES LABELS cpu FIXTURES_REQUIRED demo_model
                     PASS_REGULAR_EXPRESSION "^{\"text\":\"yellow\",\"tokens\":2,\"prompt_tokens\":77,\"ttft_ms\":[0-9.e-]+,\"tokens_per_s\":[0-9.e+-]+,\"finish_reason\":\"stop\"}")
# The reference path (a full pass per token) gives the same answer.
add_test(NAME cli_generate_no_cache
         COMMAND llava generate --model ${CMAKE_BINARY_DIR}/demo-fast/checkpoints/stage2/model
                 --tokenizer ${CMAKE_BINARY_DIR}/demo-fast/tokenizer.model --no-cache
                 --image ${CMAKE_BINARY_DIR}/demo-fast/data/images/eval_00000.png --prompt "What color is the shape?")
set_tests_properties(cli_generate_no_cache PROPERTIES LABELS cpu FIXTURES_REQUIRED demo_model
                     PASS_REGULAR_EXPRESSION "^yellow\n")
# Two images (--image twice, multi-image as LLaVA-NeXT lays it out: "<image>\n" each before the question): the prompt
# holds both (77 tokens with one image, + 36 features and "\n"'s 2 tokens), and the KV-cached answer's ids are the
# reference path's.
set(two_images --image ${CMAKE_BINARY_DIR}/demo-fast/data/images/eval_00000.png
               --image ${CMAKE_BINARY_DIR}/demo-fast/data/images/eval_00001.png --prompt "What color is the shape?")
add_test(NAME cli_generate_two_images
         COMMAND llava generate --model ${CMAKE_BINARY_DIR}/demo-fast/checkpoints/stage2/model
                 --tokenizer ${CMAKE_BINARY_DIR}/demo-fast/tokenizer.model --json ${two_images})
set_tests_properties(cli_generate_two_images PROPERTIES LABELS cpu FIXTURES_REQUIRED demo_model
                     PASS_REGULAR_EXPRESSION "\"prompt_tokens\":115,.*\"finish_reason\":\"stop\"")
add_test(NAME cli_generate_two_images_no_cache
         COMMAND sh -c "g='$<TARGET_FILE:llava>' && m='${CMAKE_BINARY_DIR}/demo-fast' && a=$($g generate --model $m/checkpoints/stage2/model --tokenizer $m/tokenizer.model --ids --image $m/data/images/eval_00000.png --image $m/data/images/eval_00001.png --prompt 'What color is the shape?') && b=$($g generate --model $m/checkpoints/stage2/model --tokenizer $m/tokenizer.model --ids --no-cache --image $m/data/images/eval_00000.png --image $m/data/images/eval_00001.png --prompt 'What color is the shape?') && [ \"$a\" = \"$b\" ] && echo same: $a")
set_tests_properties(cli_generate_two_images_no_cache PROPERTIES LABELS cpu FIXTURES_REQUIRED demo_model
                     PASS_REGULAR_EXPRESSION "same: [a-z]+ ids: [0-9 ]+")
# The export carries its tokenizer and processor files (model/io/export.h): no --tokenizer needed.
add_test(NAME cli_generate_export_tokenizer
         COMMAND llava generate --model ${CMAKE_BINARY_DIR}/demo-fast/checkpoints/stage2/model --max-new-tokens 8
                 --image ${CMAKE_BINARY_DIR}/demo-fast/data/images/eval_00000.png --prompt "What color is the shape?")
set_tests_properties(cli_generate_export_tokenizer PROPERTIES LABELS cpu FIXTURES_REQUIRED demo_model
                     PASS_REGULAR_EXPRESSION "^yellow\n")
# Bad numbers and too many stop strings are usage errors naming the flag, before any model loads.
add_test(NAME cli_generate_bad_number COMMAND llava generate --model x --prompt hi --temperature hot)
set_tests_properties(cli_generate_bad_number PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "--temperature: cannot read \"hot\" as a number")
add_test(NAME cli_generate_five_stops
         COMMAND llava generate --model x --prompt hi --stop a --stop b --stop c --stop d --stop e)
set_tests_properties(cli_generate_five_stops PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "at most 4 --stop strings")
add_test(NAME cli_bench_generate_bad_shape COMMAND llava bench-generate --shape 70b)
set_tests_properties(cli_bench_generate_bad_shape PROPERTIES LABELS cpu WILL_FAIL TRUE)
# Question files in LLaVA's format (tests/test_generate_questions.c).
set_tests_properties(test_generate_questions PROPERTIES FIXTURES_REQUIRED demo_model
                     ENVIRONMENT "LLAVA_BIN=$<TARGET_FILE:llava>;LLAVA_DEMO_DIR=${CMAKE_BINARY_DIR}/demo-fast")
# `llava eval` on the demo's model (tests/test_eval_cli.c), and every benchmark end to end on its
# synthetic data (tests/test_eval_e2e.c).
set_tests_properties(test_eval_cli test_eval_e2e PROPERTIES FIXTURES_REQUIRED demo_model
                     ENVIRONMENT "LLAVA_BIN=$<TARGET_FILE:llava>;LLAVA_DEMO_DIR=${CMAKE_BINARY_DIR}/demo-fast")
# LoRA training on the demo (tests/test_lora_train.c): ~1 minute of training, so not run again under
# the sanitizers (label long; test_lora checks the same code paths under them).
set_tests_properties(test_lora_train PROPERTIES LABELS "cpu;long" FIXTURES_REQUIRED demo_model TIMEOUT 900
                     ENVIRONMENT "LLAVA_BIN=$<TARGET_FILE:llava>;LLAVA_DEMO_DIR=${CMAKE_BINARY_DIR}/demo-fast")
# The generation benchmark's harness on the CPU (the demo's shape): it runs and reports its numbers.
add_test(NAME cli_bench_generate_cpu COMMAND llava bench-generate --device cpu --prompt-tokens 128 --new-tokens 8
         --batch 2 --no-cache-tokens 2)
set_tests_properties(cli_bench_generate_cpu PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "KV cache speed-up at batch 1, prompt 128: [0-9.]+x")

# The step benchmark's harness on the CPU (tiny model): it runs and reports a rate.
add_test(NAME cli_bench_step_cpu COMMAND llava bench-step --device cpu --steps 2)
set_tests_properties(cli_bench_step_cpu PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "bench-step: [0-9]+ tokens/s")
# ... with the research knobs the GPU check times: the tower trained and its 16 patches pooled to 4.
add_test(NAME cli_bench_step_cpu_vision COMMAND llava bench-step --device cpu --steps 2 --train-vision all --pool 2)
set_tests_properties(cli_bench_step_cpu_vision PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "CLIP 2 layers \\(2 trained\\), 4 visual tokens per image.*bench-step: [0-9]+ tokens/s")

# The memory plan of LLaVA-1.5 7B stage 2 on 8 ranks with ZeRO-2 (hand-checked in tests/test_dist.c).
add_test(NAME cli_plan_7b_stage2
         COMMAND llava plan configs/llava15-7b-stage2.json --world 8 --set model.llm=tests/data/hf/vicuna-7b-v1.5
                 --set model.vision_tower=tests/data/hf/clip-vit-large-patch14-336 --set train.zero_stage=2
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_plan_7b_stage2 PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "total +48.48 GiB")
# The ZeRO-3 plans the presets promise (hand-checked in tests/test_dist.c): 7B stage 2 on 8 x 40 GB as
# the preset has it, on 8 x 24 GB with the optimizer offloaded (8 per device, 2 accumulation steps), and
# 13B stage 2 on 8 x 80 GB with more than 10 GiB to spare; each prints its collective volume against
# ZeRO-2's.
add_test(NAME cli_plan_7b_stage2_zero3_40gb
         COMMAND llava plan configs/llava15-7b-stage2.json --world 8 --gpu-gib 40
                 --set model.llm=tests/data/hf/vicuna-7b-v1.5 --set model.vision_tower=tests/data/hf/clip-vit-large-patch14-336
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_plan_7b_stage2_zero3_40gb PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "ZeRO-3.*params +2.95 GiB.*total +38.29 GiB.*ratio 1.50\\).*fits in 40 GiB")
add_test(NAME cli_plan_7b_stage2_24gb
         COMMAND llava plan configs/llava15-7b-stage2-24gb.json --world 8 --gpu-gib 24
                 --set model.llm=tests/data/hf/vicuna-7b-v1.5 --set model.vision_tower=tests/data/hf/clip-vit-large-patch14-336
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_plan_7b_stage2_24gb PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "ZeRO-3, cuda.*8 x 2048 tokens.*in host memory \\(offload\\).*host memory per rank: 9.54 GiB.*fits in 24 GiB")
add_test(NAME cli_plan_13b_stage2_zero3
         COMMAND llava plan configs/llava15-13b-stage2.json --world 8
                 --set model.llm=tests/data/hf/vicuna-13b-v1.5 --set model.vision_tower=tests/data/hf/clip-vit-large-patch14-336
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_plan_13b_stage2_zero3 PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "ZeRO-3.*total +59.10 GiB.*fits in 80 GiB per device \\(20.9 GiB to spare\\)")
# Its activation arenas (--acts), as tests/test_dist.c computes them by hand.
add_test(NAME cli_plan_7b_stage2_acts
         COMMAND llava plan configs/llava15-7b-stage2.json --world 8 --acts --set model.llm=tests/data/hf/vicuna-7b-v1.5
                 --set model.vision_tower=tests/data/hf/clip-vit-large-patch14-336
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_plan_7b_stage2_acts PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "arena act +19748880384 bytes.*arena f32 +22341120 bytes.*arena i32 +467456 bytes")

# LLaVA-1.5 7B stage 2 with the CLIP-L tower trained too (LLaVA-NeXT's unfreeze_mm_vision_tower): 303M more
# parameters trained (7,050,304,512 in all: the 23 layers that run and the embeddings) and the tower's activations;
# its layers kept (24.94 GiB of activations) or recomputed (19.11 GiB) in backward, both within 80 GB on 8 ranks.
foreach(ck "true:50.80" "false:56.63")
  string(REPLACE ":" ";" ckg ${ck})
  list(GET ckg 0 flag)
  list(GET ckg 1 gib)
  add_test(NAME cli_plan_7b_stage2_vision_ck_${flag}
           COMMAND llava plan configs/llava15-7b-stage2.json --world 8 --set model.llm=tests/data/hf/vicuna-7b-v1.5
                   --set model.vision_tower=tests/data/hf/clip-vit-large-patch14-336
                   --set train.trainable=vision,projector,lm --set train.vision_gradient_checkpointing=${flag}
                   --set train.zero_stage=2
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(cli_plan_7b_stage2_vision_ck_${flag} PROPERTIES LABELS cpu
                       PASS_REGULAR_EXPRESSION "7,050,304,512 trained.*the tower's and the projector's.*total +${gib} GiB.*fits in 80 GiB")
endforeach()

# The presets of the other language models plan within 80 GB on 8 ranks (ZeRO-2), shapes from tests/data/hf.
foreach(p "llama3-8b:Meta-Llama-3-8B-Instruct" "qwen2-7b:Qwen2-7B-Instruct" "mistral-7b:Mistral-7B-Instruct-v0.2")
  string(REPLACE ":" ";" pg ${p})
  list(GET pg 0 name)
  list(GET pg 1 folder)
  add_test(NAME cli_plan_${name}_stage2
           COMMAND llava plan ${CMAKE_SOURCE_DIR}/configs/llava15-${name}-stage2.json --world 8
                   --set model.llm=${CMAKE_SOURCE_DIR}/tests/data/hf/${folder}
                   --set model.vision_tower=${CMAKE_SOURCE_DIR}/tests/data/hf/clip-vit-large-patch14-336)
  set_tests_properties(cli_plan_${name}_stage2 PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "fits in 80 GiB per device")
endforeach()

# The demo recipe on the CUDA backend (skipped, exit 77, without a GPU).
add_test(NAME gpu_demo_fast COMMAND llava demo --fast --check --device cuda --out ${CMAKE_BINARY_DIR}/demo-fast-cuda)
set_tests_properties(gpu_demo_fast PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 600)

# `llava serve` over the demo's trained model (tests/test_serve_model.c): answers equal to `llava
# generate`'s, 32 requests at once, the API key, every bad request class, a hang-up, SIGTERM mid-answer.
set_tests_properties(test_serve_model PROPERTIES LABELS cpu FIXTURES_REQUIRED demo_model TIMEOUT 300
                     ENVIRONMENT "LLAVA_BIN=$<TARGET_FILE:llava>;LLAVA_DEMO_DIR=${CMAKE_BINARY_DIR}/demo-fast")
# Its arguments: no model, a port out of range, a model that is not there (each fails before listening).
add_test(NAME cli_serve_no_model COMMAND llava serve --port 0)
add_test(NAME cli_serve_bad_port COMMAND llava serve --model tests/data/golden/model/tiny64/model --port 70000
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
add_test(NAME cli_serve_missing_model COMMAND llava serve --model tests/data/hf/no-such-model --port 0
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_serve_no_model cli_serve_bad_port cli_serve_missing_model PROPERTIES LABELS cpu WILL_FAIL TRUE)
# The progress line of `llava train` off a terminal: one line every log.logging_steps, with step,
# epoch, loss, lr, gradient norm, throughput, memory, elapsed and ETA; and the summary of the data
# prep that `llava train` runs itself.
add_test(NAME cli_train_progress
         COMMAND sh -c "rm -rf '${CMAKE_BINARY_DIR}/progress-run' && '$<TARGET_FILE:llava>' train '${CMAKE_BINARY_DIR}/demo-fast/stage2.json' --set 'checkpoint.output_dir=${CMAKE_BINARY_DIR}/progress-run' --set train.max_steps=4 --set log.logging_steps=2 --set model.pretrain_mm_mlp_adapter=null 2>&1")
set_tests_properties(cli_train_progress PROPERTIES LABELS cpu FIXTURES_REQUIRED demo_model
                     PASS_REGULAR_EXPRESSION "train: prepared 2400 of 2400 samples \\(2400 with an image, 0 text-only\\).*\nstep 2/4 \\| epoch 0\\.01 \\| loss [0-9.]+ \\| lr [0-9.e+-]+ \\| grad norm [0-9.e+-]+ \\| [0-9]+ tok/s \\| [0-9.]+ samples/s \\| rss [0-9.]+ GiB \\| [0-9]+s elapsed \\| ETA [0-9]+s\nstep 4/4 ")
# data.sampler_order llava-single-process reproduces LLaVA's grouped sampler as a one-process launch
# draws it (tests/test_sampler.c checks the order); with the random sampler it is refused, named.
add_test(NAME cli_config_single_process_order
         COMMAND llava config configs/llava15-7b-stage1.json --set data.sampler_order=llava-single-process
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_config_single_process_order PROPERTIES LABELS cpu WILL_FAIL FALSE
                     PASS_REGULAR_EXPRESSION "llava-single-process reproduces LLaVA's grouped sampler: it needs \"data.group_by_modality_length\": true")
# llava eval's usage errors name the flag, before anything loads.
add_test(NAME cli_eval_bad_limit COMMAND llava eval --model x --benchmark demo --data y --out y --limit abc)
set_tests_properties(cli_eval_bad_limit PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "--limit: cannot read \"abc\" as a count")
add_test(NAME cli_eval_bad_chunk COMMAND llava eval --model x --benchmark demo --data y --out y --chunks 2 --chunk-idx 5)
set_tests_properties(cli_eval_bad_chunk PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "--chunk-idx must be in \\[0, 2\\)")
add_test(NAME cli_eval_score_no_answers COMMAND llava eval score --benchmark demo --data y)
set_tests_properties(cli_eval_score_no_answers PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "--answers and --data are required")
# QLoRA's presets plan LLaVA-1.5-7B stage 2 within one 24 GB GPU and 13B within 40 GB (the NF4 layout;
# model shapes from tests/data/hf's config.json files).
foreach(p "7b:24" "13b:40")
  string(REPLACE ":" ";" pg ${p})
  list(GET pg 0 size)
  list(GET pg 1 gib)
  add_test(NAME cli_plan_qlora_${size}
           COMMAND llava plan ${CMAKE_SOURCE_DIR}/configs/llava15-${size}-stage2-qlora.json --world 1 --gpu-gib ${gib}
                   --set model.llm=${CMAKE_SOURCE_DIR}/tests/data/hf/vicuna-${size}-v1.5
                   --set model.vision_tower=${CMAKE_SOURCE_DIR}/tests/data/hf/clip-vit-large-patch14-336
                   --set train.device=cuda)
  set_tests_properties(cli_plan_qlora_${size} PROPERTIES LABELS cpu
                       PASS_REGULAR_EXPRESSION "LM's linears in NF4.*fits in ${gib} GiB per device")
endforeach()

# LoRA's commands refuse bad input by name (exit 2 for usage, 1 for a folder that is not an adapter).
add_test(NAME cli_merge_no_base COMMAND llava merge --adapter x --out y)
add_test(NAME cli_merge_bad_dtype COMMAND llava merge --adapter x --out y --base z --dtype fp8)
add_test(NAME cli_merge_not_adapter
         COMMAND llava merge --adapter ${CMAKE_SOURCE_DIR}/tests/data/golden/model/tiny64/model
                 --out ${CMAKE_BINARY_DIR}/merge_not_adapter --base ${CMAKE_SOURCE_DIR}/tests/data/golden/model/tiny64/model)
add_test(NAME cli_forward_lora_without_adapter
         COMMAND llava forward --model x --inputs i --out o --grads lora+projector)
add_test(NAME cli_demo_bad_lm COMMAND llava demo --lm gemma --out ${CMAKE_BINARY_DIR}/demo-bad-lm)
set_tests_properties(cli_merge_no_base PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "one of --base or --config")
set_tests_properties(cli_merge_bad_dtype PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "--dtype fp8: base, f32")
set_tests_properties(cli_merge_not_adapter PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "not a PEFT adapter folder \\(no adapter_config.json\\)")
set_tests_properties(cli_forward_lora_without_adapter PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "needs the adapter it trains")
set_tests_properties(cli_demo_bad_lm PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "--lm gemma: llama, llama3")
add_test(NAME cli_demo_bad_vision COMMAND llava demo --vision eva --out ${CMAKE_BINARY_DIR}/demo-bad-vision)
set_tests_properties(cli_demo_bad_vision PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "--vision eva: clip or siglip")

# llava sweep under several ranks deals its variants out over them (tests/dist/test_dist_mpi.c); the CPU's
# collectives need MPI, so torchrun-style variables alone are refused, saying so, before anything is read.
add_test(NAME cli_sweep_world_torchrun COMMAND llava sweep no-such-sweep.json)
set_tests_properties(cli_sweep_world_torchrun PROPERTIES LABELS cpu ENVIRONMENT "WORLD_SIZE=4;RANK=0"
                     PASS_REGULAR_EXPRESSION "launched as 4 processes: WORLD_SIZE=4 without an MPI launcher")
add_test(NAME cli_sweep_missing COMMAND llava sweep no-such-sweep.json)
set_tests_properties(cli_sweep_missing PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "sweep file no-such-sweep.json: no such file or directory")
if(LLAVA_HAVE_MPI)
  # under mpirun every rank reads the sweep file: a missing one is reported, and the job ends
  add_test(NAME cli_sweep_mpirun COMMAND ${MPIEXEC_EXECUTABLE} --oversubscribe -np 2 $<TARGET_FILE:llava> sweep x.json)
  set_tests_properties(cli_sweep_mpirun PROPERTIES LABELS "cpu;mpi"
                       ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
                       PASS_REGULAR_EXPRESSION "sweep file x.json: no such file or directory")
endif()

# Bad inputs of this stop's knobs, each refused by name: a tower-training count of 0, a ninth image, a negative
# frame count (the config's check and prep's own flag).
add_test(NAME cli_bench_step_bad_train_vision COMMAND llava bench-step --device cpu --train-vision 0)
set_tests_properties(cli_bench_step_bad_train_vision PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "--train-vision 0: all, or a number of layers from 1")
add_test(NAME cli_generate_nine_images
         COMMAND llava generate --model x --prompt p --image 1 --image 2 --image 3 --image 4 --image 5 --image 6
                 --image 7 --image 8 --image 9)
set_tests_properties(cli_generate_nine_images PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "at most 8 --image")
add_test(NAME cli_config_bad_video_frames
         COMMAND llava config configs/llava15-7b-stage2.json --set data.video_frames=-1
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_config_bad_video_frames PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "\"data.video_frames\" must be >= 0")
add_test(NAME cli_config_bad_max_images
         COMMAND llava config configs/llava15-7b-stage2.json --set data.max_images_per_sample=-1
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_config_bad_max_images PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "\"data.max_images_per_sample\" must be >= 0")
add_test(NAME cli_generate_bad_video_frames
         COMMAND llava generate --model none --prompt x --video a.png --video-frames -1)
set_tests_properties(cli_generate_bad_video_frames PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "--video-frames -1: a count of frames \\(0: all\\)")
set(SIXTY_FIVE_FRAMES "")
foreach(i RANGE 64)
  list(APPEND SIXTY_FIVE_FRAMES --video f${i}.png)
endforeach()
add_test(NAME cli_generate_too_many_frames COMMAND llava generate --model none --prompt x ${SIXTY_FIVE_FRAMES})
set_tests_properties(cli_generate_too_many_frames PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "at most 64 --video frames")
add_test(NAME cli_prep_bad_video_frames COMMAND llava prep --video-frames -2)
set_tests_properties(cli_prep_bad_video_frames PROPERTIES LABELS cpu PASS_REGULAR_EXPRESSION "bad value for --video-frames: -2")

# Videos (LLaVA-NeXT-Video's "video" lists of frames, one <image> standing for them) trained end to end: 4 frames per
# video, stage 2 and the evaluation taking 2 uniformly (data.video_frames 2, --video-frames 2: numpy's linspace keeps
# frames 0 and 3), the question the colour at the start or the end; --check holds the video questions alone to 0.90
# (measured 1.00 with the frames, 0.00 blind, chance 0.25).
set(DEMO_VIDEO ${CMAKE_BINARY_DIR}/demo-fast-video)
add_test(NAME demo_fast_video COMMAND llava demo --fast --check --video --out ${DEMO_VIDEO})
set_tests_properties(demo_fast_video PROPERTIES LABELS "cpu;demo;long" TIMEOUT 900 FIXTURES_SETUP demo_video_model)
# `llava generate --video` on its model: the held-out video eval-video-00045 (frames 85, 194, 90, 68 of the eval split:
# blue, green, red, yellow shapes; the world's own answers blue at the start, yellow at the end, so frames taken other
# than 0 and 3 give another colour), cached and through the no-cache reference path.
set(DEMO_VIDEO_ARGS --model ${DEMO_VIDEO}/checkpoints/stage2/model --tokenizer ${DEMO_VIDEO}/tokenizer.model
    --video ${DEMO_VIDEO}/data/images/eval_00085.png --video ${DEMO_VIDEO}/data/images/eval_00194.png
    --video ${DEMO_VIDEO}/data/images/eval_00090.png --video ${DEMO_VIDEO}/data/images/eval_00068.png --video-frames 2)
add_test(NAME cli_generate_video_end
         COMMAND llava generate ${DEMO_VIDEO_ARGS} --prompt "What color is the shape at the end of the video?")
add_test(NAME cli_generate_video_start
         COMMAND llava generate ${DEMO_VIDEO_ARGS} --prompt "What color is the shape at the start of the video?")
add_test(NAME cli_generate_video_no_cache
         COMMAND llava generate ${DEMO_VIDEO_ARGS} --no-cache --prompt "What color is the shape at the end of the video?")
set_tests_properties(cli_generate_video_end cli_generate_video_no_cache PROPERTIES LABELS "cpu;long"
                     FIXTURES_REQUIRED demo_video_model PASS_REGULAR_EXPRESSION "^yellow\n")
set_tests_properties(cli_generate_video_start PROPERTIES LABELS "cpu;long" FIXTURES_REQUIRED demo_video_model
                     PASS_REGULAR_EXPRESSION "^blue\n")
# Refused by name: images and a video in one question; a question file's line with both keys, or an empty video.
add_test(NAME cli_generate_video_and_image
         COMMAND llava generate --model none --prompt "x" --image a.png --video b.png)
set_tests_properties(cli_generate_video_and_image PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "--image and --video: a question takes images or one video's frames")
add_test(NAME cli_generate_questions_video_and_image
         COMMAND llava generate --model none --questions tests/data/questions/video_and_image.jsonl
                 --answers ${CMAKE_BINARY_DIR}/video_and_image_answers.jsonl
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_generate_questions_video_and_image PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "video_and_image.jsonl line 2: both \"image\" and \"video\": one or the other")
add_test(NAME cli_generate_questions_video_empty
         COMMAND llava generate --model none --questions tests/data/questions/video_empty.jsonl
                 --answers ${CMAKE_BINARY_DIR}/video_empty_answers.jsonl
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_generate_questions_video_empty PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "video_empty.jsonl line 1: \"video\" must be a list of 1 to 64 frame paths")
add_test(NAME cli_demo_video_anyres COMMAND llava demo --video --anyres --out ${CMAKE_BINARY_DIR}/demo-video-anyres)
set_tests_properties(cli_demo_video_anyres PROPERTIES LABELS cpu
                     PASS_REGULAR_EXPRESSION "--video with --anyres: AnyRes tiles images, not video frames")
