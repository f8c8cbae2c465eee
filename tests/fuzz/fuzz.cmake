# libFuzzer targets, compiled with clang (-fsanitize=fuzzer,address,undefined) by a custom command
# so the main build keeps its own compiler. Each runs briefly in the test suite (label "fuzz").
set(LLAVA_FUZZ_SECONDS 20 CACHE STRING "seconds each fuzz target runs in ctest")

# llava_fuzz_target(NAME CORPUS SOURCE... [LIBS LIBRARY...]): LIBS are extra libraries to link.
function(llava_fuzz_target name corpus)
  cmake_parse_arguments(PARSE_ARGV 2 FZ "" "" "LIBS")
  set(srcs ${FZ_UNPARSED_ARGUMENTS})
  set(out ${CMAKE_BINARY_DIR}/${name})
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${LLAVA_CLANG} -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined
            -fno-sanitize-recover=undefined -I${CMAKE_SOURCE_DIR} ${CJSON_CFLAGS} ${srcs}
            ${CJSON_LDFLAGS} ${FZ_LIBS} -lm -lpthread -o ${out}
    DEPENDS ${srcs}
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
    COMMENT "fuzz target ${name}")
  add_custom_target(${name}_build ALL DEPENDS ${out})
  add_test(NAME ${name} COMMAND sh ${CMAKE_SOURCE_DIR}/tests/fuzz/run_fuzz.sh ${out}
           ${CMAKE_SOURCE_DIR}/${corpus} ${LLAVA_FUZZ_SECONDS} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES LABELS "cpu;fuzz" FAIL_REGULAR_EXPRESSION "ERROR: |SUMMARY: ")
endfunction()

llava_fuzz_target(fuzz_safetensors tests/fuzz/corpus/safetensors
  ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_safetensors.c
  ${CMAKE_SOURCE_DIR}/model/io/safetensors.c
  ${CMAKE_SOURCE_DIR}/model/io/torchbin.c
  ${CMAKE_SOURCE_DIR}/common/util.c
  ${CMAKE_SOURCE_DIR}/common/crc32c.c
  ${CMAKE_SOURCE_DIR}/common/dtype.c)
llava_fuzz_target(fuzz_torchbin tests/fuzz/corpus/torchbin
  ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_torchbin.c
  ${CMAKE_SOURCE_DIR}/model/io/torchbin.c
  ${CMAKE_SOURCE_DIR}/model/io/safetensors.c
  ${CMAKE_SOURCE_DIR}/common/util.c
  ${CMAKE_SOURCE_DIR}/common/crc32c.c
  ${CMAKE_SOURCE_DIR}/common/dtype.c)
llava_fuzz_target(fuzz_image tests/fuzz/corpus/image ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_image.c ${CMAKE_SOURCE_DIR}/data/image.c ${CMAKE_SOURCE_DIR}/data/image_jpeg.c ${CMAKE_SOURCE_DIR}/data/image_png.c ${CMAKE_SOURCE_DIR}/data/image_gif.c ${CMAKE_SOURCE_DIR}/common/util.c LIBS ${JPEG_LIBRARIES} ${PNG_LIBRARIES})
llava_fuzz_target(fuzz_tokenizer tests/fuzz/corpus/tokenizer ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_tokenizer.c ${CMAKE_SOURCE_DIR}/data/tokenizer.c ${CMAKE_SOURCE_DIR}/data/bpe.c ${CMAKE_SOURCE_DIR}/common/util.c)
llava_fuzz_target(fuzz_json_stream tests/fuzz/corpus/json_stream ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_json_stream.c ${CMAKE_SOURCE_DIR}/data/json_stream.c ${CMAKE_SOURCE_DIR}/common/util.c)
llava_fuzz_target(fuzz_config tests/fuzz/corpus/config ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_config.c ${CMAKE_SOURCE_DIR}/train/config.c ${CMAKE_SOURCE_DIR}/model/config.c ${CMAKE_SOURCE_DIR}/common/json.c ${CMAKE_SOURCE_DIR}/common/util.c)
llava_fuzz_target(fuzz_prep_record tests/fuzz/corpus/prep_record ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_prep_record.c ${CMAKE_SOURCE_DIR}/data/prep_record.c ${CMAKE_SOURCE_DIR}/common/util.c)
