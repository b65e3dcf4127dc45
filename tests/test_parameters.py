"""Section 5 of dsc_utils: count_params and param_table, each tensor counted once."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import dsc_utils as du


def test_param_table_rows_and_total():
    table = du.param_table(du.DepthwiseSeparableConv2d(3, 64, 5, stride=2))
    assert [row[0] for row in table.rows] == ["depthwise.weight", "depthwise.bias", "pointwise.weight",
                                             "pointwise.bias", "total"]
    assert [row[2] for row in table.rows] == ["75", "3", "192", "64", "334"]
    assert table.rows[0][1] == "3 x 1 x 5 x 5"
    frozen = nn.Linear(4, 4)
    frozen.bias.requires_grad_(False)
    assert du.count_params(frozen) == 16 and du.param_table(frozen).rows[-1][2] == "16"


def test_shared_parameters_are_counted_once_everywhere():
    lin = nn.Linear(10, 10)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    assert du.count_params(model) == 110
    table = du.param_table(model)
    assert [row[0] for row in table.rows] == ["0.weight", "0.bias", "total"] and table.rows[-1][2] == "110"
    tied = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    tied[1].weight = tied[0].weight
    assert du.count_params(tied) == 16 == sum(c.params for c in du.layer_costs(tied, torch.zeros(1, 4)))


def test_batch_norm_parameters_are_in_count_params_and_param_table_but_not_their_statistics():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4))
    assert du.count_params(model) == 108 + 8
    assert du.param_table(model).rows[-1][2] == "116"
    assert du.cost_table(model, torch.zeros(1, 3, 5, 5)).rows[-1][4] == "108"


@pytest.mark.parametrize("function", [du.count_params, du.param_table])
def test_parameter_functions_refuse_what_is_not_a_module(function):
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got \\[1\\] of type list"):
        function([1])
