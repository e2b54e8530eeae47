/*
 * Embedding protocell from C: train a small model for a few steps on a text, save it,
 * load it back, check that both generate the same tokens, and step a cell colony.
 *
 * Build (after `cargo build --release -p protocell-ffi`), against the shared library:
 *   cc -std=c11 -Wall -Wextra -O2 -I ffi/include ffi/examples/embed.c \
 *      -L target/release -lprotocell -Wl,-rpath,$PWD/target/release -o embed
 * or the static one:
 *   cc -std=c11 -Wall -Wextra -O2 -I ffi/include ffi/examples/embed.c \
 *      target/release/libprotocell.a -lpthread -ldl -lm -o embed-static
 * Run: ./embed [checkpoint path]   (default: embed.ckpt in the working directory)
 */
#include "protocell.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints the failing call and the library's message, then exits. */
#define CHECK(call)                                                                        \
    do {                                                                                   \
        ProtocellStatus s_ = (call);                                                       \
        if (s_ != PROTOCELL_STATUS_OK) {                                                   \
            fprintf(stderr, "%s:%d: %s failed (status %d): %s\n", __FILE__, __LINE__, #call, \
                    (int)s_, protocell_last_error());                                      \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static const char *TEXT =
    "the colony grows when the cells share their energy; the colony shrinks when the "
    "pressure rises and the cells die. the mucus carries signals from cell to cell. ";

enum { BATCH = 4, SEQ = 32, STEPS = 40, N_NEW = 48 };

static void print_tokens(ProtocellModel *model, const uint32_t *ids, size_t n) {
    size_t needed = 0;
    /* first call sizes the buffer */
    ProtocellStatus s = protocell_model_decode(model, ids, n, NULL, 0, &needed);
    if (s != PROTOCELL_STATUS_BUFFER_TOO_SMALL) CHECK(s);
    char *text = malloc(needed);
    CHECK(protocell_model_decode(model, ids, n, text, needed, &needed));
    printf("%s", text);
    free(text);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "embed.ckpt";
    printf("protocell %s\n", protocell_version());

    ProtocellDevice *cpu = NULL;
    CHECK(protocell_device_create("cpu", 3, &cpu));

    /* A device this build cannot run is an error with a message, not a crash. */
    ProtocellDevice *cuda = NULL;
    if (protocell_device_create("cuda", 4, &cuda) != PROTOCELL_STATUS_OK)
        printf("cuda: %s\n", protocell_last_error());
    else
        CHECK(protocell_device_destroy(&cuda));

    /* ---- a small GPT on UTF-8 bytes ---- */
    const char *spec = "{\"arch\": \"gpt\", \"preset\": \"tiny\", "
                       "\"model\": {\"n_layer\": 1, \"d_model\": 32, \"n_head\": 2}, \"seed\": 1}";
    ProtocellModel *model = NULL;
    CHECK(protocell_model_create(cpu, spec, strlen(spec), &model));
    ProtocellModelInfo info;
    CHECK(protocell_model_info(model, &info));
    printf("model: %zu parameters, vocabulary %zu, context %zu\n", info.num_params, info.vocab_size,
           info.context_len);

    size_t n_ids = 0;
    ProtocellStatus s = protocell_model_encode(model, TEXT, strlen(TEXT), NULL, 0, &n_ids);
    if (s != PROTOCELL_STATUS_BUFFER_TOO_SMALL) CHECK(s);
    uint32_t *ids = malloc(n_ids * sizeof *ids);
    CHECK(protocell_model_encode(model, TEXT, strlen(TEXT), ids, n_ids, &n_ids));

    const char *opt_json = "{\"lr\": 0.003}";
    ProtocellOptimizer *opt = NULL;
    CHECK(protocell_optimizer_create(opt_json, strlen(opt_json), &opt));

    uint32_t inputs[BATCH * SEQ], targets[BATCH * SEQ];
    double first = 0, last = 0;
    for (int step = 0; step < STEPS; step++) {
        for (int b = 0; b < BATCH; b++) {
            size_t start = (size_t)(step * 13 + b * 29) % (n_ids - SEQ - 1);
            memcpy(&inputs[b * SEQ], &ids[start], SEQ * sizeof(uint32_t));
            memcpy(&targets[b * SEQ], &ids[start + 1], SEQ * sizeof(uint32_t));
        }
        ProtocellStepStats st;
        CHECK(protocell_train_step(model, opt, inputs, targets, BATCH, SEQ, &st));
        if (step == 0) first = st.loss;
        last = st.loss;
    }
    printf("training: loss %.3f -> %.3f over %d steps\n", first, last, STEPS);
    if (!(last < first - 0.5)) {
        fprintf(stderr, "the loss did not fall\n");
        return 1;
    }

    /* An error is a status and a message: a token outside the vocabulary. */
    uint32_t bad[2] = {1, 999};
    float logits[2 * 256];
    s = protocell_model_forward(model, bad, 1, 2, logits, 2 * info.vocab_size);
    printf("bad token: status %d: %s\n", (int)s, protocell_last_error());
    if (s != PROTOCELL_STATUS_INVALID_ARGUMENT) return 1;

    /* ---- save, load, generate ---- */
    CHECK(protocell_model_save(model, opt, path, strlen(path)));
    ProtocellModel *loaded = NULL;
    CHECK(protocell_model_load(cpu, path, strlen(path), &loaded));

    uint32_t a[N_NEW], b[N_NEW];
    CHECK(protocell_model_generate(model, ids, 8, 0.0f, 0, 7, a, N_NEW));
    CHECK(protocell_model_generate(loaded, ids, 8, 0.0f, 0, 7, b, N_NEW));
    if (memcmp(a, b, sizeof a) != 0) {
        fprintf(stderr, "the loaded model generates other tokens\n");
        return 1;
    }
    printf("sample: \"");
    print_tokens(model, ids, 8);
    print_tokens(loaded, b, N_NEW);
    printf("\"\n");

    /* ---- resume training: the optimiser saved with the model ---- */
    ProtocellOptimizer *resumed = NULL;
    CHECK(protocell_optimizer_load(loaded, path, strlen(path), &resumed));
    ProtocellStepStats more;
    CHECK(protocell_train_step(loaded, resumed, inputs, targets, BATCH, SEQ, &more));
    printf("resumed: step %llu, loss %.3f\n", (unsigned long long)more.step, more.loss);
    if (more.step != STEPS + 1) return 1;
    CHECK(protocell_optimizer_destroy(&resumed));

    /* ---- a cell colony on its own ---- */
    const char *colony_json = "{\"blocks\": 4, \"mode\": \"sound\", \"inner_steps\": 5}";
    ProtocellColony *colony = NULL;
    CHECK(protocell_colony_create(cpu, colony_json, strlen(colony_json), &colony));
    size_t n = 0;
    CHECK(protocell_colony_blocks(colony, &n));
    float drive[4] = {0.8f, 0.0f, 0.0f, 0.3f};
    for (int t = 0; t < 10; t++) CHECK(protocell_colony_step(colony, drive, n));
    float state[4 * 4], mucus[4 * 4];
    CHECK(protocell_colony_get_state(colony, state, 4 * n));
    CHECK(protocell_colony_get_mucus(colony, mucus, n * n));
    printf("colony after 10 updates (E P G L per block):\n");
    for (size_t i = 0; i < n; i++)
        printf("  block %zu: %.3f %.3f %.3f %.3f   mucus row sum %.3f\n", i, state[4 * i], state[4 * i + 1],
               state[4 * i + 2], state[4 * i + 3],
               mucus[i * n] + mucus[i * n + 1] + mucus[i * n + 2] + mucus[i * n + 3]);
    /* write a state back */
    for (size_t i = 0; i < 4 * n; i++) state[i] = 0.5f;
    CHECK(protocell_colony_set_state(colony, state, 4 * n));

    /* ---- a bank of presynaptic terminals on its own: a terminal driven again and again
       depletes its readily-releasable pool, so its output falls ---- */
    const char *presyn_json = "{\"attn_topk\": 2}";
    ProtocellPresyn *bank = NULL;
    CHECK(protocell_presyn_create(presyn_json, strlen(presyn_json), 6, &bank));
    size_t keys = 0, width = 0;
    CHECK(protocell_presyn_shape(bank, &keys, &width));
    float spike[6] = {0.2f, 2.0f, -1.0f, 0.5f, 1.5f, 0.0f};
    float release[6];
    printf("presynaptic output of terminal 1 over 5 queries:");
    for (int t = 0; t < 5; t++) {
        CHECK(protocell_presyn_step(bank, spike, keys, release, keys));
        printf(" %.3f", release[1]);
    }
    float *pools = malloc(keys * width * sizeof(float));
    if (!pools) return 1;
    CHECK(protocell_presyn_get_state(bank, pools, keys * width));
    printf("\nreadily-releasable pool of terminal 1: %.3f (starts at 6)\n", pools[1 * width + 2]);
    pools[1 * width + 2] = 6.0f; /* refill it by hand */
    CHECK(protocell_presyn_set_state(bank, pools, keys * width));
    free(pools);
    CHECK(protocell_presyn_destroy(&bank));

    /* ---- release; a second destroy is an error, not a double free ---- */
    CHECK(protocell_colony_destroy(&colony));
    CHECK(protocell_model_destroy(&loaded));
    CHECK(protocell_model_destroy(&model));
    if (protocell_model_destroy(&model) != PROTOCELL_STATUS_NULL_POINTER) return 1;
    CHECK(protocell_optimizer_destroy(&opt));
    CHECK(protocell_device_destroy(&cpu));
    free(ids);
    remove(path);
    printf("ok\n");
    return 0;
}
