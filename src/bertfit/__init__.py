"""bertfit: fine-tune BERT-family encoders on GLUE and SQuAD."""
from .model import BertConfig, BertForQuestionAnswering, BertForSequenceClassification, BertModel
from .pretrained import load_pretrained, save_pretrained

__version__ = "0.1.0"
__all__ = ["BertConfig", "BertModel", "BertForSequenceClassification", "BertForQuestionAnswering",
           "load_pretrained", "save_pretrained"]
