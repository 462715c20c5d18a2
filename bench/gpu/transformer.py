# SPDX-License-Identifier: Apache-2.0
"""The small transformer the GPU benchmarks train: token embedding,
nn.TransformerEncoder (d_model 512, 8 heads, feed-forward 2048, 6 layers,
batch_first), a linear head over a vocabulary of 8192 tokens; AdamW and
cross-entropy loss."""

VOCAB = 8192
D_MODEL = 512


def build(torch):
    """(model on the GPU, optimizer, loss function)."""
    from torch import nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, D_MODEL)
            layer = nn.TransformerEncoderLayer(D_MODEL, nhead=8, dim_feedforward=2048, dropout=0.1,
                                               batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False)
            self.head = nn.Linear(D_MODEL, VOCAB)

        def forward(self, tokens):
            return self.head(self.encoder(self.embed(tokens)))

    model = Model().to(torch.device("cuda"))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4), nn.CrossEntropyLoss()
