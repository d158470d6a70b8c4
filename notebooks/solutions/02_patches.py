"""Solutions to the exercises of 02_patches (the tests run them through the notebook's checks)."""


def my_n_patches(height, width, patch_size):
    rows = -(-height // patch_size)  # ceil: the last row is padded up to a whole patch
    cols = -(-width // patch_size)
    return rows * cols


def my_patch(image, row, col, p):
    block = image[row * p:(row + 1) * p, col * p:(col + 1) * p]  # (p, p, 3)
    return block.permute(2, 0, 1).reshape(-1)  # channel-first, then row by row


def my_stem_params(stem, d_model):
    if stem == "linear":
        return 3 * 40 * 40 * d_model + d_model
    c = d_model // 4
    conv1 = 3 * 4 * 4 * c + c  # 4x4 stride 4: 40 -> 10
    conv2 = c * 5 * 5 * c + c  # 5x5 stride 5: 10 -> 2
    conv3 = c * 2 * 2 * d_model + d_model  # 2x2 stride 2: 2 -> 1
    return conv1 + conv2 + conv3
